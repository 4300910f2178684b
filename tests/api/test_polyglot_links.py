"""Issue 14 item 2: a PNG with HTML appended, uploaded as ``evil.html``, is stored under a
server-chosen name, and no link the API or the admin gives out answers with HTML - on local
storage and on S3 (moto in server mode, fetched over real HTTP)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
import requests

from removal import runner
from removal.models import Task, Upload
from tests.factories import make_user
from tests.helpers import DiscModel, named
from tests.images import make_image

POLYGLOT = make_image("PNG", (300, 200)) + (
    b"<html><body><script>fetch('/admin/').then(r => r.text())</script></body></html>"
)


class Links(HTMLParser):
    """Every ``href`` and ``src`` of a page that points at a stored file."""

    def __init__(self):
        super().__init__()
        self.found: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value and (
                    "/api/v1/files/" in value or "/quickbg-test/" in value):
                self.found.add(value)


def links_in(html: str) -> set[str]:
    parser = Links()
    parser.feed(html)
    return parser.found


def fetch(client, url: str) -> tuple[int, dict, bytes]:
    if url.startswith("http://127.0.0.1"):  # a presigned S3 URL (moto)
        response = requests.get(url, timeout=10)
        return response.status_code, dict(response.headers), response.content
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, dict(response.headers), body


@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.django_db(transaction=True)
def test_no_link_to_a_polyglot_original_or_its_result_serves_html(
        backend, request, user, client_for, client, run_worker, monkeypatch):
    s3 = request.getfixturevalue("s3") if backend == "s3" else None
    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: DiscModel())
    api = client_for(user)
    accepted = api.post("/api/v1/uploads", {"file": named(POLYGLOT, "evil.html")},
                        format="multipart")
    assert accepted.status_code == 202, accepted.content
    upload = Upload.objects.get(pk=accepted.json()["upload_id"])
    assert upload.original_filename == "evil.html"  # kept in the row only
    assert upload.original_key == f"originals/{user.pk}/{upload.pk}/original.png"
    if s3 is not None:
        head = s3.head_object(Bucket="quickbg-test", Key=upload.original_key)
        assert head["ContentType"] == "image/png"
    run_worker()
    task = Task.objects.get(pk=accepted.json()["task_id"])
    assert task.status == Task.Status.COMPLETED, task.error_message

    body = api.get(f"/api/v1/tasks/{task.pk}").json()
    redirect = api.get(f"/api/v1/tasks/{task.pk}/result")
    assert redirect.status_code == 302
    urls = {body["presigned_url"], redirect["Location"]}

    staff = make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    for page in (f"/admin/removal/task/{task.pk}/change/",
                 f"/admin/removal/upload/{upload.pk}/change/"):
        response = client.get(page)
        assert response.status_code == 200
        found = links_in(response.content.decode())
        assert found, f"no file link on {page}"
        urls |= found
    assert len(urls) >= 3  # the result (API and admin) and the original (admin)

    served = []
    for url in sorted(urls):
        status, headers, content = fetch(client, url)
        headers = {k.lower(): v for k, v in headers.items()}
        assert status == 200, url
        assert headers["content-type"] == "image/png", (url, headers["content-type"])
        assert headers["content-disposition"].startswith("attachment"), url
        if s3 is None:
            assert headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in headers["content-security-policy"]
        served.append(content)
    assert POLYGLOT in served  # the original was among them, served as a PNG download
