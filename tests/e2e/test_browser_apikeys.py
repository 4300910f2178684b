"""The web page's API keys panel in headless Chromium: create (secret shown once, copy button),
list, revoke; the key it shows really authenticates. Browser helpers from ``test_browser``."""

from __future__ import annotations

from rest_framework.test import APIClient

from accounts.models import UserAPIKey
from tests.e2e.test_browser import browser, pytestmark, sign_in, wait_for  # noqa: F401

assert pytestmark  # the same marks: transactional database, skipped without Chromium


def test_create_copy_list_and_revoke_a_key(browser, live_server, user):  # noqa: F811
    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: d.find_element("id", "apikeys-empty").is_displayed(),
             message="the empty key list")
    browser.find_element("id", "apikey-name").send_keys("zapier")
    browser.find_element("id", "apikey-create").click()
    wait_for(browser, lambda d: d.find_element("id", "apikey-new").is_displayed())
    secret = browser.find_element("id", "apikey-secret").get_attribute("value")
    key = UserAPIKey.objects.get(user=user)
    assert secret.startswith(key.prefix + ".") and key.name == "zapier"
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=secret)
    assert client.get("/api/v1/tasks").status_code == 200

    wait_for(browser, lambda d: len(d.find_elements("css selector", "#apikeys-body tr")) == 1)
    cells = [c.text for c in browser.find_elements("css selector", "#apikeys-body tr td")]
    assert cells[:2] == ["zapier", key.prefix] and secret not in " ".join(cells)
    browser.find_element("id", "apikey-copy").click()
    wait_for(browser, lambda d: d.find_element("id", "apikey-copied").text == "Copied.")

    browser.execute_script("window.confirm = () => true;")
    browser.find_element("css selector", "#apikeys-body button").click()
    wait_for(browser, lambda d: d.find_element("id", "apikeys-empty").is_displayed(),
             message="the list empty after revoking")
    key.refresh_from_db()
    assert key.revoked
    assert client.get("/api/v1/tasks").status_code == 401
