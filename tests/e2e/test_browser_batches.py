"""The batch flow of the web page in headless Chromium: several files or a zip make a batch.

Same set-up as ``tests/e2e/test_browser.py`` (its fixtures and helpers are reused): the live server,
a real worker run in this process (``run_worker``), real photos from ``../shared/fixtures/``.
"""

from __future__ import annotations

import base64
import io
import zipfile

import pytest

from removal.models import Batch, Task
from tests.e2e.test_browser import (  # noqa: F401 - fixtures
    CHROMIUM,
    browser,
    is_shown,
    screenshot,
    sign_in,
    text_of,
    wait_for,
)
from tests.images import FIXTURES, make_image

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing "
                                                     "(.ci/install-browser.sh)"),
]

PHOTOS = ("car-1.jpg", "animal-2.jpg")


def grid_state(driver) -> list[dict]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#batch-grid .batch-item')).map((li) => {"
        " const img = li.querySelector('img');"
        " return {status: li.dataset.status, name: li.querySelector('.name').textContent,"
        "  progress: li.querySelector('progress').value, src: img.src || '',"
        "  loaded: !img.hidden && img.complete && img.naturalWidth > 0}; });"
    )


@pytest.mark.model
def test_several_files_make_a_batch_with_a_grid_progress_and_zip(
    browser, live_server, user, run_worker, tmp_path  # noqa: F811
):
    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: is_shown(d, "app-section"), message="the app did not open")
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"not an image at all\n" * 20)
    paths = [str(FIXTURES / name) for name in PHOTOS] + [str(bad)]
    browser.find_element("id", "file").send_keys("\n".join(paths))
    wait_for(browser, lambda d: d.find_element("id", "upload-submit").is_enabled())
    assert text_of(browser, "file-name").startswith("3 images")
    browser.find_element("id", "upload-submit").click()

    wait_for(browser, lambda d: is_shown(d, "batch-section"), message="no batch view")
    wait_for(browser, lambda d: len(grid_state(d)) == 2, message="the grid never filled")
    batch = Batch.objects.get(owner=user)
    assert batch.size == 2 and not is_shown(browser, "job-section")
    assert "notes.jpg: File is not a valid image" in text_of(browser, "batch-rejected")
    assert text_of(browser, "batch-status") == "QUEUED"
    state = grid_state(browser)
    assert [s["status"] for s in state] == ["queued", "queued"]
    assert all(s["src"].startswith("blob:") for s in state)  # the local files as previews

    run_worker()  # real worker, real model; the page keeps polling

    wait_for(browser, lambda d: text_of(d, "batch-status") == "COMPLETED", timeout=120,
             message="the batch never completed on the page")
    wait_for(browser, lambda d: all(s["loaded"] and "/api/v1/files/" in s["src"]
                                    for s in grid_state(d)),
             timeout=30, message="the result thumbnails never loaded")
    assert set(Task.objects.filter(batch=batch).values_list("status", flat=True)) == {
        "completed"}
    assert browser.find_element("id", "batch-progress").get_attribute("value") == "100"
    assert [s["name"] for s in grid_state(browser)] == list(PHOTOS)
    assert [s["progress"] for s in grid_state(browser)] == [100, 100]

    button = browser.find_element("id", "batch-download")
    assert button.is_enabled() and button.text == "Download all (zip)"
    # The page fetches the zip with its token; the test fetches it the same way to read it.
    button.click()
    wait_for(browser, lambda d: d.find_element("id", "batch-download")
             .get_attribute("data-downloaded-bytes"), message="the zip was not downloaded")
    data = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const t = sessionStorage.getItem('quickbg.access');"
        "fetch(`/api/v1/batches/${arguments[0]}/download`,"
        " {headers: {Authorization: `Bearer ${t}`}})"
        ".then((r) => r.arrayBuffer()).then((b) => {"
        " let s = ''; new Uint8Array(b).forEach((c) => { s += String.fromCharCode(c); });"
        " done(btoa(s)); });",
        str(batch.pk),
    )
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(data)))
    assert archive.namelist() == ["car-1.png", "animal-2.png", "manifest.json"]
    size = int(button.get_attribute("data-downloaded-bytes"))
    assert size == len(base64.b64decode(data))
    screenshot(browser, tmp_path, "batch.png")


def test_a_dropped_zip_makes_a_batch_and_one_file_still_uploads_alone(
    browser, live_server, user  # noqa: F811
):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", make_image("PNG", (80, 60)))
        archive.writestr("b.png", make_image("PNG", (90, 60)))
    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: is_shown(d, "app-section"))
    browser.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));"
        "const data = new DataTransfer();"
        "data.items.add(new File([bytes], 'set.zip', {type: 'application/zip'}));"
        "document.getElementById('dropzone').dispatchEvent(new DragEvent('drop',"
        " {dataTransfer: data, bubbles: true, cancelable: true}));",
        base64.b64encode(buffer.getvalue()).decode(),
    )
    assert "set.zip" in text_of(browser, "file-name")
    browser.find_element("id", "upload-submit").click()
    wait_for(browser, lambda d: len(grid_state(d)) == 2, message="the zip made no batch")
    batch = Batch.objects.get(owner=user)
    assert sorted(Task.objects.filter(batch=batch).values_list(
        "upload__original_filename", flat=True)) == ["a.png", "b.png"]
    assert text_of(browser, "batch-status") == "QUEUED"

    # One file afterwards: the single-upload flow, as before.
    single = FIXTURES / "girl-1.jpg"
    browser.find_element("id", "file").send_keys(str(single))
    wait_for(browser, lambda d: d.find_element("id", "upload-submit").is_enabled())
    assert text_of(browser, "file-name").startswith("girl-1.jpg")
    browser.find_element("id", "upload-submit").click()
    wait_for(browser, lambda d: text_of(d, "job-status") == "QUEUED")
    task = Task.objects.get(upload__owner=user, batch=None)
    assert task.upload.original_filename == "girl-1.jpg"
    assert Batch.objects.count() == 1


def test_task_changelist_is_readable_at_1280_px(browser, live_server, tmp_path):  # noqa: F811
    from tests.factories import make_task, make_upload, make_user

    staff = make_user(is_staff=True, is_superuser=True)
    owner = make_user(email="a.rather.long.address@example.com")
    for n in range(15):
        make_task(owner=owner, upload=make_upload(
            owner=owner, original_filename=f"a-very-long-catalogue-file-name-number-{n}.jpeg"),
            status=Task.Status.FAILED if n % 3 else Task.Status.COMPLETED,
            processing_time=2.5, metrics={"memory_usage_mb": 612.0})
    browser.set_window_size(1280, 900)
    browser.get(live_server.url + "/admin/login/")
    browser.find_element("id", "id_username").send_keys(staff.username)
    browser.find_element("id", "id_password").send_keys("correct-horse-battery")
    browser.find_element("css selector", "input[type=submit]").click()
    wait_for(browser, lambda d: "/admin/" in d.current_url and "login" not in d.current_url)
    browser.get(live_server.url + "/admin/removal/task/")
    layout = browser.execute_script(
        "const table = document.getElementById('result_list');"
        "const row = table.querySelector('tbody tr');"
        "const cell = (cls) => row.querySelector('.field-' + cls);"
        "const lineHeight = parseFloat(getComputedStyle(cell('short_id')).lineHeight) || 20;"
        "const results = table.closest('.results') || table.parentElement;"
        "return {page: document.documentElement.scrollWidth, view: window.innerWidth,"
        " scroll: results.scrollWidth, box: results.clientWidth,"
        " boxRight: results.getBoundingClientRect().right,"
        " idHeight: cell('short_id').querySelector('span').getBoundingClientRect().height,"
        " lineHeight: lineHeight,"
        " headers: Array.from(table.querySelectorAll('thead th'))"
        "  .map((th) => th.textContent.trim()),"
        " memoryRight: cell('memory_mb').getBoundingClientRect().right};"
    )
    assert [h.lower() for h in layout["headers"][1:]] == [
        "", "id", "owner", "file name", "status", "model", "time (s)", "memory (mb)", "created"]
    assert layout["page"] <= layout["view"], layout  # no horizontal scrolling of the page...
    assert layout["scroll"] <= layout["box"], layout  # ...nor of the table in its box
    assert layout["memoryRight"] <= layout["boxRight"], layout  # memory is not cut off
    assert layout["idHeight"] <= 1.5 * layout["lineHeight"], layout  # the id on one line
    screenshot(browser, tmp_path, "admin-tasks-1280.png")
