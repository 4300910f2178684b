"""The web page in a real browser: headless Debian Chromium driven by Selenium.

Against pytest-django's ``live_server`` (a real HTTP server on the test database) and a real
QuickBG worker, the tests sign in, upload a fixture photo, watch the task finish, and check that
the cut-out image actually loaded in the page; an oversized upload shows the API's own message.

How the worker runs: in this process, after the page has queued the task — the same
``run_worker --burst`` the end-to-end API tests use (``run_worker`` fixture). The live server
thread keeps answering the page's polls while the worker runs, so the page sees the task go from
queued to completed. In-process needs no database URL or media folder handed to a subprocess, and
works on any database the suite runs on, so it is the reliable choice.

Browser: ``/usr/bin/chromium`` with ``/usr/bin/chromedriver`` (Debian's ``chromium`` and
``chromium-driver``; ``.ci/install-browser.sh`` installs them). The tests skip only when
``/usr/bin/chromium`` is missing. Screenshots go to ``var/screenshots/`` (kept after the run).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings

from removal.models import Task
from tests.factories import PASSWORD, make_task
from tests.images import FIXTURES, make_image

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
CHROME_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1700", "--lang=en-US",
]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: install Debian's chromium and chromium-driver "
               "(.ci/install-browser.sh)",
    ),
]


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMEDRIVER.exists(), (
        "/usr/bin/chromium is installed but /usr/bin/chromedriver is not: "
        "apt-get install chromium-driver (.ci/install-browser.sh)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # The console log, where Chromium reports every Content-Security-Policy violation.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


# --- helpers --------------------------------------------------------------------------------


def dropdown(element):
    from selenium.webdriver.support.ui import Select

    return Select(element)


def wait_for(driver, condition, timeout: float = 20, message: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message)


def text_of(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def is_shown(driver, element_id: str) -> bool:
    return driver.find_element("id", element_id).is_displayed()


def sign_in(driver, live_server, username: str, password: str = PASSWORD) -> None:
    driver.get(live_server.url + "/")
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
    driver.find_element("id", "username").send_keys(username)
    driver.find_element("id", "password").send_keys(password)
    driver.find_element("id", "login-submit").click()


def session_tokens(driver) -> dict:
    return driver.execute_script(
        "return {access: sessionStorage.getItem('quickbg.access'),"
        " refresh: sessionStorage.getItem('quickbg.refresh')}"
    )


def choose_file(driver, path: Path) -> None:
    driver.find_element("id", "file").send_keys(str(path))
    wait_for(driver, lambda d: d.find_element("id", "upload-submit").is_enabled())


def record_progress_texts(driver) -> None:
    """Keep every status text the page shows, so the test can check what a user saw."""
    driver.execute_script(
        "window.seenStatus = [];"
        "const el = document.getElementById('progress-text');"
        "new MutationObserver(() => window.seenStatus.push(el.textContent))"
        "  .observe(el, {childList: true, characterData: true, subtree: true});"
    )


def csp_violations(driver) -> list[str]:
    """CSP violations Chromium reported on its console since the last call."""
    return [entry["message"] for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"]]


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(900, min(int(height) + 160, 4000)))
    target = SCREENSHOTS / name
    assert driver.save_screenshot(str(tmp_path / name))
    shutil.copyfile(tmp_path / name, target)
    assert target.stat().st_size > 10_000
    return target


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.model
def test_sign_in_upload_and_see_the_cutout(browser, live_server, user, run_worker, tmp_path):
    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: is_shown(d, "app-section"), message="the app did not open")
    assert text_of(browser, "account-name") == user.username
    assert not is_shown(browser, "login-section")

    choose_file(browser, FIXTURES / "car-1.jpg")
    assert "car-1.jpg" in text_of(browser, "file-name")
    browser.find_element("id", "opt-format").send_keys("PNG")
    record_progress_texts(browser)
    browser.find_element("id", "upload-submit").click()

    # The page shows the queued task while no worker is running.
    wait_for(browser, lambda d: text_of(d, "job-status") == "QUEUED",
             message="the page never showed the task as queued")
    assert "Queued" in text_of(browser, "progress-text")
    task = Task.objects.get(upload__owner=user)
    assert task.status == Task.Status.QUEUED
    assert task.upload.original_filename == "car-1.jpg"

    run_worker()  # the real worker, real model; the page keeps polling meanwhile

    wait_for(
        browser,
        lambda d: d.execute_script(
            "const img = document.getElementById('result-img');"
            "return !img.hidden && img.complete && img.naturalWidth > 0;"
        ),
        timeout=60, message="the result image never loaded",
    )
    task.refresh_from_db()
    assert task.status == Task.Status.COMPLETED
    assert text_of(browser, "job-status") == "COMPLETED"
    assert browser.find_element("id", "progress").get_attribute("value") == "100"
    seen = browser.execute_script("return window.seenStatus")
    assert "Queued — waiting for a worker…" in seen and seen[-1] == "Done", seen

    # Before: the original the user picked; after: the PNG from the API, over a checkerboard.
    sizes = browser.execute_script(
        "const b = document.getElementById('before-img');"
        "const r = document.getElementById('result-img');"
        "return {before: [b.naturalWidth, b.naturalHeight],"
        " after: [r.naturalWidth, r.naturalHeight], src: r.src,"
        " frame: getComputedStyle(r.parentElement).backgroundImage};"
    )
    assert sizes["before"] == [task.upload.width, task.upload.height]
    assert 0 < sizes["after"][0] <= task.upload.width  # trimmed cut-out, never larger
    assert "/api/v1/files/" in sizes["src"]
    assert "linear-gradient" in sizes["frame"]

    download = browser.find_element("id", "download")
    assert download.is_displayed()
    assert download.get_attribute("href") == sizes["src"]
    assert download.get_attribute("download") is not None

    # Recent tasks lists it with its file name and final status.
    wait_for(browser, lambda d: "car-1.jpg" in text_of(d, "tasks-body"))
    row = browser.find_element("css selector", f'tr[data-task-id="{task.pk}"]')
    assert "completed" in row.text.lower()
    assert row.find_element("link text", "Download").get_attribute("href").startswith(
        live_server.url + "/api/v1/files/"
    )

    path = screenshot(browser, tmp_path, "browser-flow.png")
    print(f"screenshot: {path}")


def test_oversized_file_shows_the_api_message(
    browser, live_server, user, client_for, tmp_path, empty_queue
):
    limit = int(settings.QUICKBG_MAX_UPLOAD_MB * 1024 * 1024)
    big = tmp_path / "huge-photo.jpg"
    big.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(limit + 2 * 1024 * 1024))

    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: is_shown(d, "app-section"))
    choose_file(browser, big)
    browser.find_element("id", "upload-submit").click()

    wait_for(browser, lambda d: is_shown(d, "upload-error"), timeout=30,
             message="no error was shown for an oversized file")
    shown = text_of(browser, "upload-error")
    assert "exceeds maximum" in shown
    # Exactly the API's own `detail` for the same file, not a message the page made up.
    with big.open("rb") as fh:
        api_response = client_for(user).post("/api/v1/uploads", {"file": fh}, format="multipart")
    assert api_response.status_code == 400
    assert shown == api_response.json()["detail"]
    assert not is_shown(browser, "job-section")
    assert Task.objects.count() == 0
    assert empty_queue.count == 0
    screenshot(browser, tmp_path, "browser-oversized.png")


def test_wrong_password_shows_the_api_message(browser, live_server, user):
    sign_in(browser, live_server, user.username, password="not-the-password")
    wait_for(browser, lambda d: is_shown(d, "login-error"))
    assert text_of(browser, "login-error") == "No active account found with the given credentials"
    assert not is_shown(browser, "app-section")
    assert session_tokens(browser) == {"access": None, "refresh": None}


def _forged_token(exp: int) -> str:
    """A JWT-shaped token with the given expiry and a signature the server will reject."""

    def part(data: dict) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'exp': exp})}.bm90LWEtc2lnbmF0dXJl"


@pytest.mark.parametrize(
    "exp", [1, 4_102_444_800], ids=["expired-access-token", "access-token-rejected-with-401"]
)
def test_access_token_is_refreshed(browser, live_server, user, exp):
    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: is_shown(d, "app-section"))
    wait_for(browser, lambda d: is_shown(d, "tasks-empty"))
    first = session_tokens(browser)
    assert first["access"] and first["refresh"]
    task = make_task(owner=user)  # appears only if the next list request succeeds

    forged = _forged_token(exp)
    browser.execute_script("sessionStorage.setItem('quickbg.access', arguments[0])", forged)
    browser.find_element("id", "refresh-tasks").click()

    wait_for(browser, lambda d: session_tokens(d)["access"] not in (None, forged, first["access"]),
             message="the page did not get a new access token")
    now = session_tokens(browser)
    assert now["refresh"] != first["refresh"]  # rotated by the server
    assert is_shown(browser, "app-section")
    wait_for(browser, lambda d: d.find_elements("css selector", f'tr[data-task-id="{task.pk}"]'),
             message="the task list was not reloaded with the new token")
    assert not is_shown(browser, "tasks-error")


def test_expired_session_returns_to_sign_in(browser, live_server, user):
    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: is_shown(d, "app-section"))
    browser.execute_script(
        "sessionStorage.setItem('quickbg.access', arguments[0]);"
        "sessionStorage.setItem('quickbg.refresh', 'no-longer-valid');",
        _forged_token(1),
    )
    browser.find_element("id", "refresh-tasks").click()
    wait_for(browser, lambda d: is_shown(d, "login-section"))
    assert text_of(browser, "login-error") == "Your session has expired. Please sign in again."
    assert session_tokens(browser) == {"access": None, "refresh": None}


def test_upload_sends_the_chosen_output_options(browser, live_server, user, tmp_path):
    """The form's controls reach POST /api/v1/uploads as the API's field names and values."""
    image = tmp_path / "small.png"
    image.write_bytes(make_image("PNG", size=(120, 90)))
    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: is_shown(d, "app-section"))
    # Record the multipart fields of every POST the page makes to /uploads.
    browser.execute_script(
        "window.sentForms = [];"
        "const realFetch = window.fetch;"
        "window.fetch = (url, init = {}) => {"
        "  if (String(url).endsWith('/uploads') && init.body instanceof FormData) {"
        "    window.sentForms.push([...init.body.entries()].map("
        "      ([k, v]) => [k, typeof v === 'string' ? v : v.name]));"
        "  }"
        "  return realFetch(url, init);"
        "};"
    )
    choose_file(browser, image)
    dropdown(browser.find_element("id", "opt-format")).select_by_value("webp")
    dropdown(browser.find_element("id", "opt-channels")).select_by_value("alpha")
    browser.find_element("id", "opt-bg-on").click()
    browser.execute_script("document.getElementById('opt-bg-color').value = '#00ff88'")
    margin = browser.find_element("id", "opt-crop-margin")
    margin.clear()
    margin.send_keys("5%")
    browser.find_element("id", "opt-refine").click()  # off
    browser.find_element("id", "opt-alpha-matting").click()  # on
    browser.find_element("id", "opt-decontaminate").click()  # off
    browser.find_element("id", "upload-submit").click()

    wait_for(browser, lambda d: text_of(d, "job-status") == "QUEUED")
    [sent] = browser.execute_script("return window.sentForms")
    assert sent[0] == ["file", "small.png"] and len(dict(sent)) == len(sent)
    assert dict(sent[1:]) == {
        "format": "webp", "channels": "alpha", "crop": "true", "refine": "false",
        "alpha_matting": "true", "decontaminate": "false", "crop_margin": "5%",
        "bg_color": "00ff88",
    }
    task = Task.objects.get(upload__owner=user)
    assert task.upload.original_filename == "small.png"

    # With cropping off, no margin is sent.
    browser.find_element("id", "opt-crop").click()
    assert not browser.find_element("id", "opt-crop-margin").is_enabled()
    browser.find_element("id", "upload-submit").click()
    wait_for(browser, lambda d: len(d.execute_script("return window.sentForms")) == 2)
    second = dict(browser.execute_script("return window.sentForms")[1])
    assert second["crop"] == "false" and "crop_margin" not in second


def test_dropped_file_is_uploaded(browser, live_server, user):
    """Drag and drop: a file dropped on the zone is the one uploaded."""
    png = base64.b64encode(make_image("PNG", size=(160, 120), color=(20, 120, 220))).decode()
    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: is_shown(d, "app-section"))
    browser.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));"
        "const data = new DataTransfer();"
        "data.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));"
        "const zone = document.getElementById('dropzone');"
        "zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: data, bubbles: true,"
        " cancelable: true}));"
        "window.zoneHighlighted = zone.classList.contains('dragover');"
        "zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true,"
        " cancelable: true}));",
        png,
    )
    assert browser.execute_script("return window.zoneHighlighted") is True
    assert "dragover" not in browser.find_element("id", "dropzone").get_attribute("class")
    assert text_of(browser, "file-name").startswith("dropped.png")
    browser.find_element("id", "upload-submit").click()

    wait_for(browser, lambda d: text_of(d, "job-status") == "QUEUED")
    upload = Task.objects.select_related("upload").get(upload__owner=user).upload
    assert (upload.original_filename, upload.width, upload.height) == ("dropped.png", 160, 120)
    # The "before" view shows the dropped image itself.
    wait_for(browser, lambda d: d.execute_script(
        "return document.getElementById('before-img').naturalWidth") == 160)


# --- Content-Security-Policy, sign-out, API docs --------------------------------------------


def test_page_works_under_its_content_security_policy(browser, live_server, user):
    import requests

    header = requests.get(live_server.url + "/", timeout=10).headers["Content-Security-Policy"]
    assert "script-src 'self'" in header and "'unsafe-inline'" not in header
    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: is_shown(d, "app-section"), message="the app did not open")
    assert is_shown(browser, "upload-form") and is_shown(browser, "dropzone")
    wait_for(browser, lambda d: is_shown(d, "tasks-empty"))
    # The page's own script ran (it signed in and drew the form) and nothing was refused.
    assert browser.execute_script("return document.body.dataset.ready") == "true"
    assert csp_violations(browser) == []


def test_sign_out_revokes_the_refresh_token(browser, live_server, user):
    import time

    from rest_framework.test import APIClient
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: is_shown(d, "app-section"))
    refresh = session_tokens(browser)["refresh"]
    assert refresh
    browser.find_element("id", "sign-out").click()
    wait_for(browser, lambda d: is_shown(d, "login-section"))
    assert session_tokens(browser) == {"access": None, "refresh": None}
    jti = json.loads(base64.urlsafe_b64decode(refresh.split(".")[1] + "=="))["jti"]
    deadline = time.monotonic() + 10
    while not BlacklistedToken.objects.filter(token__jti=jti).exists():
        assert time.monotonic() < deadline, "Sign out did not revoke the refresh token"
        time.sleep(0.1)
    response = APIClient().post("/api/v1/auth/token/refresh", {"refresh": refresh},
                                format="json")
    assert response.status_code == 401
    assert csp_violations(browser) == []


def test_admin_works_under_its_content_security_policy(browser, live_server, user):
    import requests

    from accounts.models import User

    make_task(owner=user)
    User.objects.create_superuser("csp-admin", "csp@example.com", "csp-admin-password-1")
    header = requests.get(live_server.url + "/admin/login/", timeout=10).headers[
        "Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in header and "default-src 'self'" in header
    browser.get(live_server.url + "/admin/login/")
    browser.find_element("id", "id_username").send_keys("csp-admin")
    browser.find_element("id", "id_password").send_keys("csp-admin-password-1")
    browser.find_element("css selector", "input[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements("id", "quickbg-ops"), message="no admin index")
    for path in ("/admin/removal/task/", "/admin/accounts/user/", "/admin/rq/queues/0/"):
        browser.get(live_server.url + path)
        wait_for(browser, lambda d: d.find_elements("id", "content"), message=path)
        assert "Server Error" not in browser.title, path
    # The task changelist's select-all checkbox is the admin's own script at work.
    browser.get(live_server.url + "/admin/removal/task/")
    wait_for(browser, lambda d: d.find_elements("id", "action-toggle"))
    browser.find_element("id", "action-toggle").click()
    wait_for(browser, lambda d: d.find_element("css selector", "input.action-select").is_selected())
    assert csp_violations(browser) == []


@pytest.mark.parametrize("path", ["/api/v1/docs", "/api/v1/redoc"])
def test_api_docs_list_the_operations_without_network(browser, live_server, path):
    """Swagger UI and ReDoc come from this server (drf-spectacular-sidecar): the browser has
    no network beyond the test server, and the page still lists the API's operations."""
    browser.get(live_server.url + path)
    wait_for(
        browser, lambda d: "/api/v1/uploads" in d.execute_script("return document.body.innerText"),
        timeout=30, message=f"{path} did not list the API's operations",
    )
    text = browser.execute_script("return document.body.innerText")
    assert "/api/v1/tasks/{id}" in text and "QuickBG API" in text
    # ReDoc's footer always asks its vendor's CDN for a logo; the policy refusing that call
    # out is the one expected report (the image hides itself on error).
    refused = [m for m in csp_violations(browser) if "cdn.redoc.ly/redoc/logo-mini.svg" not in m]
    assert refused == []


def test_recent_tasks_page_through_the_cursor_api(browser, live_server, user):
    """The recent list is the API's first page; "Show more" follows its ``next`` cursor."""
    tasks = [make_task(owner=user, status=Task.Status.COMPLETED) for _ in range(23)]
    sign_in(browser, live_server, user.username)
    rows = "return document.querySelectorAll('#tasks-body tr').length"
    wait_for(browser, lambda d: d.execute_script(rows) == 20)
    assert is_shown(browser, "more-tasks")
    browser.find_element("id", "more-tasks").click()
    wait_for(browser, lambda d: d.execute_script(rows) == 23)
    assert not is_shown(browser, "more-tasks")
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#tasks-body tr')].map(r => r.dataset.taskId)")
    newest_first = Task.objects.filter(pk__in=[t.pk for t in tasks]).order_by("-created_at", "-id")
    assert shown == [str(pk) for pk in newest_first.values_list("pk", flat=True)]
