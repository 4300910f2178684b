"""The web page at ``/``: rendered by Django, its static files served, its API calls real."""

from __future__ import annotations

import re

import pytest
import requests
from django.contrib.staticfiles import finders
from django.templatetags.static import static

pytestmark = pytest.mark.django_db

# The JavaScript type depends on the platform's mime table; both names are correct.
STATIC_FILES = {
    "web/app.js": ("text/javascript", "application/javascript"),
    "web/app.css": ("text/css",),
    "web/webhooks.js": ("text/javascript", "application/javascript"),
}


def test_home_page_renders_sign_in_and_upload_form(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert '<form id="login-form"' in html
    assert 'autocomplete="current-password"' in html
    assert '<input type="file" id="file" name="file"' in html
    # Every output option of POST /uploads has a control, named as the API names it.
    options = ("format", "channels", "bg_color", "crop", "crop_margin", "refine", "alpha_matting",
               "decontaminate")
    for name in options:
        assert re.search(rf'name="{name}"', html), name
    assert "up to 10 MB and 4096×4096 px" in html
    assert static("web/app.js") in html and static("web/app.css") in html


def test_home_page_loads_nothing_from_other_hosts(client):
    html = client.get("/").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources, "the page references its scripts and styles"
    assert [s for s in sources if s.startswith(("http:", "https:", "//"))] == []


def test_home_page_shows_the_configured_limits(client, settings):
    settings.QUICKBG_MAX_UPLOAD_MB = 2.5
    settings.QUICKBG_MAX_DIMENSION = 2048
    html = client.get("/").content.decode()
    assert "up to 2.5 MB and 2048×2048 px" in html


def test_home_page_refuses_post(client):
    assert client.post("/").status_code == 405


@pytest.mark.parametrize("path", sorted(STATIC_FILES))
def test_static_files_are_found_by_staticfiles(path):
    found = finders.find(path)
    assert found, f"{path} is not found by django.contrib.staticfiles"
    assert open(found, encoding="utf-8").read().strip()


@pytest.mark.parametrize(("path", "content_types"), sorted(STATIC_FILES.items()))
def test_static_files_are_served_over_http(live_server, path, content_types):
    response = requests.get(live_server.url + static(path), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(content_types)
    assert len(response.content) > 1000


def test_page_script_uses_the_api_it_claims(client):
    """The script's endpoints exist in the API's URLconf (a renamed route breaks this test)."""
    script = open(finders.find("web/app.js"), encoding="utf-8").read()
    for endpoint in ("/auth/token", "/auth/token/refresh", "/uploads", "/tasks"):
        assert f"`${{API}}{endpoint}`" in script or f'api("{endpoint}"' in script, endpoint
    assert client.post("/api/v1/auth/token", {}).status_code == 400
    assert client.get("/api/v1/tasks").status_code == 401
