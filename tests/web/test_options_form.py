"""The web page's output options come from the contract (``GET /api/v1/options``), in headless
Chromium against the live server (set-up and helpers of ``tests/e2e/test_browser.py``): the laid-out
controls take their choices and defaults from it, every other option gets a control under "More
options", and a single upload and a batch send the same options."""

from __future__ import annotations

from removal.api import options as options_view
from removal.models import Batch, Task
from removal.pipeline.options import Options, OptionSpec
from tests.e2e import test_browser as page
from tests.e2e.test_browser import browser  # noqa: F401 - the fixture
from tests.images import make_image

pytestmark = page.pytestmark  # a transactional database, and Chromium

CONTROLS = """return [...document.querySelectorAll('#upload-form [data-option]')].map((c) => ({
  name: c.dataset.option, tag: c.tagName, type: c.type, value: c.value, checked: c.checked,
  choices: c.tagName === 'SELECT' ? [...c.options].map((o) => o.value) : null}));"""
RECORD_POSTS = """window.sentForms = [];
const realFetch = window.fetch;
window.fetch = (url, init = {}) => {
  if (init.body instanceof FormData) {
    window.sentForms.push([String(url), [...init.body.entries()].filter(
      ([, v]) => typeof v === 'string')]);
  }
  return realFetch(url, init);
};"""


def signed_in(browser, live_server, user):  # noqa: F811
    page.sign_in(browser, live_server, user.username)
    page.wait_for(browser, lambda d: page.is_shown(d, "app-section"),
                  message="the app did not open")


def test_every_option_of_the_contract_has_one_control(browser, live_server, user):  # noqa: F811
    signed_in(browser, live_server, user)
    controls = {c["name"]: c for c in browser.execute_script(CONTROLS)}
    specs = {spec.name: spec for spec in Options.contract()}
    assert sorted(controls) == sorted(specs)
    laid_out = {"format", "channels", "bg_color", "crop", "crop_margin", "refine",
                "alpha_matting", "decontaminate"}
    for name in laid_out:  # filled from the contract: choices, the default
        spec, control = specs[name], controls[name]
        if spec.type == "choice":
            assert control["choices"] == list(spec.choices) and control["value"] == spec.default
        elif spec.type == "boolean":
            assert control["checked"] is spec.default, name
    assert controls["crop_margin"]["value"] == specs["crop_margin"].default
    for name in set(specs) - laid_out:  # "More options": empty means the server's default
        control = controls[name]
        assert control["value"] == "", name
        if specs[name].type == "choice":
            assert control["choices"] == ["", *specs[name].choices]


def test_a_new_option_in_the_contract_gets_a_control(browser, live_server, user, monkeypatch):  # noqa: F811
    extra = OptionSpec(name="future_option", type="boolean", default=False,
                       help="An option added later.")
    specs = [*Options.contract(), extra]
    monkeypatch.setattr(options_view.Options, "contract", classmethod(lambda cls: specs))
    signed_in(browser, live_server, user)
    control = browser.find_element("id", "opt-future-option")
    assert control.get_attribute("name") == "future_option"
    assert control.get_attribute("title") == "An option added later."
    choices = [o.get_attribute("value") for o in page.dropdown(control).options]
    assert choices == ["", "true", "false"]


def test_more_options_and_batches_send_the_same_options(browser, live_server, user, tmp_path):  # noqa: F811
    images = []
    for name in ("one.png", "two.png"):
        images.append(tmp_path / name)
        images[-1].write_bytes(make_image("PNG", size=(120, 90)))
    signed_in(browser, live_server, user)
    browser.execute_script(RECORD_POSTS)
    page.dropdown(browser.find_element("id", "opt-format")).select_by_value("webp")
    browser.find_element("id", "opt-decontaminate").click()  # off
    browser.find_element("id", "more-options").click()
    page.dropdown(browser.find_element("id", "opt-size")).select_by_value("hd")
    browser.find_element("id", "opt-scale").send_keys("50%")
    page.dropdown(browser.find_element("id", "opt-add-shadow")).select_by_value("true")

    browser.find_element("id", "file").send_keys(str(images[0]))
    page.wait_for(browser, lambda d: d.find_element("id", "upload-submit").is_enabled())
    browser.find_element("id", "upload-submit").click()
    page.wait_for(browser, lambda d: Task.objects.filter(upload__owner=user).exists())
    browser.find_element("id", "file").send_keys("\n".join(str(p) for p in images))
    page.wait_for(browser, lambda d: d.find_element("id", "upload-submit").is_enabled())
    browser.find_element("id", "upload-submit").click()
    page.wait_for(browser, lambda d: Batch.objects.filter(owner=user).exists())

    single, batch = browser.execute_script("return window.sentForms")
    assert single[0].endswith("/uploads") and batch[0].endswith("/batches")
    assert dict(single[1]) == dict(batch[1]) == {
        "format": "webp", "channels": "rgba", "crop": "true", "crop_margin": "10",
        "refine": "true", "alpha_matting": "false", "decontaminate": "false", "size": "hd",
        "scale": "50%", "add_shadow": "true",
    }
    task = Task.objects.get(upload__owner=user, batch=None)
    stored = Batch.objects.get(owner=user).options
    for options in (task.options, stored):
        assert (options["format"], options["size"], options["scale"], options["add_shadow"],
                options["decontaminate"]) == ("webp", "hd", "50%", True, False)
