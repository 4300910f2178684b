"""The web page's Webhooks panel in a real browser (see test_browser.py for the set-up)."""

from __future__ import annotations

import pytest

from removal.models import WebhookEndpoint, WebhookSecret
from tests.e2e.test_browser import CHROMIUM, browser, sign_in, wait_for  # noqa: F401 - fixture

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing"),
]


def test_webhooks_panel_adds_lists_deletes_and_rotates(browser, live_server, user,  # noqa: F811
                                                       settings):
    settings.QUICKBG_FETCH_ALLOW = ["127.0.0.1:9"]
    sign_in(browser, live_server, user.username)
    wait_for(browser, lambda d: d.find_element("id", "app-section").is_displayed())
    browser.find_element("css selector", "#webhooks-panel summary").click()
    secret = wait_for(browser, lambda d: d.find_element("id", "webhooks-secret")
                      .get_attribute("value"), message="secret not shown")
    assert secret == WebhookSecret.objects.get(owner=user).secret
    assert secret.startswith("whsec_")

    browser.find_element("id", "webhook-url").send_keys("http://10.0.0.1/hook")
    browser.find_element("id", "webhook-add").click()
    error = wait_for(browser, lambda d: d.find_element("id", "webhooks-error").text)
    assert "'10.0.0.1' resolves to a private address" in error

    field = browser.find_element("id", "webhook-url")
    field.clear()
    field.send_keys("http://127.0.0.1:9/hook")
    browser.find_element("id", "webhook-add").click()
    wait_for(browser, lambda d: d.find_elements("css selector", "#webhooks-list li"))
    items = browser.find_elements("css selector", "#webhooks-list li code")
    assert [item.text for item in items] == ["http://127.0.0.1:9/hook"]
    assert list(WebhookEndpoint.objects.filter(owner=user).values_list("url", flat=True)) == [
        "http://127.0.0.1:9/hook"]

    browser.find_element("id", "webhooks-rotate").click()
    wait_for(browser, lambda d: d.find_element("id", "webhooks-secret").get_attribute("value")
             not in ("", secret))
    assert browser.find_element("id", "webhooks-secret").get_attribute("value") == \
        WebhookSecret.objects.get(owner=user).secret

    browser.find_element("css selector", "#webhooks-list li button").click()
    wait_for(browser, lambda d: not d.find_elements("css selector", "#webhooks-list li"))
    assert not WebhookEndpoint.objects.filter(owner=user).exists()
    assert browser.find_element("id", "webhooks-empty").is_displayed()
