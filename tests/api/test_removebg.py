"""POST /v1.0/removebg and GET /v1.0/account: remove.bg's API on the normal task machinery.

The synchronous request needs a worker while it waits: ``job_thread`` runs the real job entry
point (``removal.jobs.process_task``) for each job on the test queue, in a thread of this process,
with the stand-in model (the model itself is exercised by the npm client test).
"""

from __future__ import annotations

import base64
import io
import threading
import time
import zipfile

import numpy as np
import pytest
from django.db import connection
from PIL import Image
from rest_framework.test import APIClient

from accounts.models import UserAPIKey
from removal import jobs, runner
from removal.models import Task
from tests.factories import make_user
from tests.helpers import DiscModel, named
from tests.images import make_image, soft_disc_photo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job_thread(empty_queue, monkeypatch):
    """Process queued jobs in a thread until the test ends (stand-in model)."""
    model = DiscModel()
    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: model)
    stop = threading.Event()
    seen: list[str] = []

    def loop():
        try:
            while not stop.is_set():
                for job_id in empty_queue.get_job_ids():
                    job = empty_queue.fetch_job(job_id)
                    empty_queue.remove(job_id)
                    seen.append(job_id)
                    jobs.process_task(job.args[0])
                time.sleep(0.01)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield seen
    stop.set()
    thread.join(timeout=30)


@pytest.fixture
def key(user):
    return UserAPIKey.objects.create_key(user=user, name="removebg")[1]


def keyed(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def photo(size=(400, 300)) -> bytes:
    return make_image("JPEG", size=size, color=(180, 40, 40))


def test_file_upload_answers_the_image_with_remove_bg_headers(user, key, job_thread):
    response = keyed(key).post("/v1.0/removebg", {
        "image_file": named(photo(), "car.jpg"), "size": "auto", "crop": "undefined",
        "unknown_option": "whatever", "type": "car", "semitransparency": "true",
        "add_shadow": "false",
    }, format="multipart")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "RGBA" and image.size == (400, 300)  # remove.bg: crop off by default
    assert response["X-Width"] == "400" and response["X-Height"] == "300"
    assert response["X-Type"] == "car"  # the type sent, echoed (type_level 1 by default)
    alpha = np.asarray(image)[:, :, 3]
    ys, xs = np.nonzero(alpha)
    assert int(response["X-Foreground-Top"]) == ys.min()
    assert int(response["X-Foreground-Left"]) == xs.min()
    assert int(response["X-Foreground-Width"]) == xs.max() - xs.min() + 1
    assert int(response["X-Foreground-Height"]) == ys.max() - ys.min() + 1
    assert response["X-Credits-Charged"] == "1"
    assert int(response["X-RateLimit-Limit"]) == 500  # remove.bg's 500 megapixel-images/min
    assert int(response["X-RateLimit-Remaining"]) == 499  # 0.12 MP counts as 1
    assert int(time.time()) < int(response["X-RateLimit-Reset"]) <= int(time.time()) + 60
    # A normal task of the key's user, queued at the front.
    task = Task.objects.get(pk=response["X-Task-Id"])
    assert task.upload.owner == user and task.status == Task.Status.COMPLETED
    assert len(job_thread) == 1


def test_accept_image_gets_the_image_and_json_errors(key, job_thread):
    client = keyed(key)
    response = client.post("/v1.0/removebg", {"image_file": named(photo())}, format="multipart",
                           HTTP_ACCEPT="image/png")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    error = client.post("/v1.0/removebg", {}, format="multipart", HTTP_ACCEPT="image/*")
    assert error.status_code == 400 and error["Content-Type"] == "application/json"
    assert error.json()["errors"][0]["code"] == "invalid_input"


def test_base64_json_answers_json_and_preview_costs_a_quarter(key, job_thread):
    body = {"image_file_b64": base64.b64encode(photo((1000, 800))).decode()}
    response = keyed(key).post("/v1.0/removebg", body, format="json",
                               HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    result = Image.open(io.BytesIO(base64.b64decode(data["result_b64"])))
    assert result.size[0] * result.size[1] <= 250_000  # size defaults to preview
    assert response["X-Credits-Charged"] == "0.25"
    assert {data["foreground_width"], data["foreground_height"]} != {0}
    assert str(data["foreground_top"]) == response["X-Foreground-Top"]


def test_format_options_reach_the_result(key, job_thread):
    client = keyed(key)
    jpg = client.post("/v1.0/removebg", {"image_file": named(photo()), "format": "jpg",
                                         "bg_color": "green"}, format="multipart")
    assert jpg.status_code == 200 and jpg["Content-Type"] == "image/jpeg"
    assert np.asarray(Image.open(io.BytesIO(jpg.content)))[2, 2, 1] > 100  # green
    archive = client.post("/v1.0/removebg", {"image_file": named(photo()), "format": "zip",
                                             "channels": "rgba"}, format="multipart")
    assert archive.status_code == 200 and archive["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        assert sorted(zipped.namelist()) == ["alpha.png", "color.jpg"]
    background = make_image("PNG", size=(50, 50), color=(0, 0, 255))
    over = client.post("/v1.0/removebg", {"image_file": named(photo()),
                                          "bg_image_file": named(background, "bg.png"),
                                          "format": "png"}, format="multipart")
    assert over.status_code == 200, over.content
    assert np.asarray(Image.open(io.BytesIO(over.content)))[0, 0].tolist() == [0, 0, 255]


def test_decontaminate_false_keeps_the_photos_edge_colours(key, job_thread, monkeypatch):
    monkeypatch.setattr(runner, "get_segmenter",
                        lambda name=None: DiscModel(radius=0.3, edge=0.08))
    client = keyed(key)
    answers = {
        flag: client.post("/v1.0/removebg", {"image_file": named(soft_disc_photo(), "disc.png"),
                                             **fields}, format="multipart")
        for flag, fields in {True: {}, False: {"decontaminate": "false"}}.items()
    }
    assert [a.status_code for a in answers.values()] == [200, 200]
    pixels = {flag: np.asarray(Image.open(io.BytesIO(a.content))).astype(int)
              for flag, a in answers.items()}
    alpha = pixels[True][:, :, 3]
    band = (alpha > 0) & (alpha < 248)
    red = np.array([200, 40, 40])
    plain = np.abs(pixels[False][:, :, :3][band] - red).mean()
    assert plain > 40 and np.abs(pixels[True][:, :, :3][band] - red).mean() < 0.5 * plain
    bad = client.post("/v1.0/removebg", {"image_file": named(soft_disc_photo(), "disc.png"),
                                         "decontaminate": "maybe"}, format="multipart")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["title"] == "decontaminate: must be true or false"


@pytest.mark.parametrize("data, message", [
    ({}, "Send exactly one of image_file, image_file_b64 or image_url"),
    ({"image_file_b64": "aGVsbG8=", "image_url": "http://127.0.0.1:9/a.jpg"},
     "Send exactly one of image_file, image_file_b64 or image_url"),
    ({"image_file_b64": base64.b64encode(make_image()).decode(), "type": "spaceship"},
     "type: must be one of auto, person, product, car"),
    ({"image_file_b64": base64.b64encode(make_image()).decode(), "size": "giant"},
     "size: must be one of"),
    ({"image_file_b64": "aGVsbG8="}, "File is not a valid image"),
])
def test_bad_input_is_400_in_remove_bg_error_shape(key, data, message):
    response = keyed(key).post("/v1.0/removebg", data, format="json")
    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["title"].startswith(message) or message in error["title"]
    assert error["code"]
    assert Task.objects.count() == 0


def test_missing_or_wrong_key_is_403_and_revoked_is_401(user, key):
    missing = APIClient().post("/v1.0/removebg", {}, format="json")
    assert missing.status_code == 403
    assert missing.json()["errors"][0]["title"] == "Missing API Key"
    wrong = keyed("abc.def").post("/v1.0/removebg", {}, format="json")
    assert wrong.status_code == 403 and wrong.json()["errors"][0]["code"] == "auth_failed"
    UserAPIKey.objects.filter(user=user).update(revoked=True)
    revoked = keyed(key).post("/v1.0/removebg", {}, format="json")
    assert revoked.status_code == 401
    assert revoked.json()["errors"][0]["title"] == "This API key has been revoked; create a new one"
    jwt_only = APIClient().get("/v1.0/account")
    assert jwt_only.status_code == 403


def test_throttled_is_429_with_retry_after(key, settings):
    from django.core.cache import cache

    [cache._cache.get_client(None, write=True).delete(k) for k in cache._cache.get_client(None).scan_iter(cache.make_key("*"))]  # noqa: E501 - not cache.clear(): FLUSHDB would wipe every queue on the shared Redis
    settings.QUICKBG_REMOVEBG_RATE = "1/min"
    client = keyed(key)
    first = client.post("/v1.0/removebg", {}, format="json")
    assert first.status_code == 400 and first["X-RateLimit-Remaining"] == "0"
    second = client.post("/v1.0/removebg", {}, format="json")
    assert second.status_code == 429
    assert second.json()["errors"][0]["code"] == "rate_limit_exceeded"
    assert 0 < int(second["Retry-After"]) <= 60
    [cache._cache.get_client(None, write=True).delete(k) for k in cache._cache.get_client(None).scan_iter(cache.make_key("*"))]  # noqa: E501 - not cache.clear(): FLUSHDB would wipe every queue on the shared Redis
def test_past_the_timeout_it_is_504_with_the_task_id_and_waits_ahead_of_async_work(
        user, key, client_for, settings, empty_queue):
    settings.QUICKBG_SYNC_TIMEOUT = 1
    backlog = client_for(user).post("/api/v1/uploads", {"file": named(photo())},
                                    format="multipart")
    assert backlog.status_code == 202
    started = time.monotonic()
    response = keyed(key).post("/v1.0/removebg", {"image_file": named(photo())},
                               format="multipart")
    assert 1 <= time.monotonic() - started < 5
    assert response.status_code == 504
    [error] = response.json()["errors"]
    task = Task.objects.get(pk=error["task_id"])
    assert str(task.pk) in error["title"] and task.status == Task.Status.QUEUED
    # The synchronous task is first in line, ahead of the upload queued before it.
    assert empty_queue.get_job_ids()[0] == task.rq_job_id
    assert len(empty_queue.get_job_ids()) == 2


def test_a_failed_task_is_400_with_its_message(key, job_thread, monkeypatch):
    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: DiscModel(empty=True))
    response = keyed(key).post("/v1.0/removebg", {"image_file": named(photo())},
                               format="multipart")
    assert response.status_code == 400
    assert response.json()["errors"][0]["title"] == "No foreground found in the image"


def test_account_counts_this_months_credits(user, key, job_thread, settings):
    client = keyed(key)
    assert client.post("/v1.0/removebg", {"image_file": named(photo()), "size": "full"},
                       format="multipart").status_code == 200
    assert client.post("/v1.0/removebg", {"image_file": named(photo())},
                       format="multipart").status_code == 200
    other = make_user()
    other_key = UserAPIKey.objects.create_key(user=other, name="x")[1]
    response = client.get("/v1.0/account")
    assert response.status_code == 200
    attributes = response.json()["data"]["attributes"]
    assert attributes["credits"]["total"] == 1.25
    assert attributes["credits"]["used_this_month"] == 1.25
    assert "api" in attributes
    assert keyed(other_key).get("/v1.0/account").json()["data"]["attributes"]["credits"][
        "total"] == 0

    settings.QUICKBG_MONTHLY_CREDITS = 2
    third = client.post("/v1.0/removebg", {"image_file": named(photo()), "size": "full"},
                        format="multipart")
    assert third.status_code == 402
    assert third.json()["errors"][0]["code"] == "insufficient_credits"
    assert client.get("/v1.0/account").json()["data"]["attributes"]["credits"][
        "remaining"] == 0.75
    # The limit holds for every endpoint that makes tasks.
    upload = APIClient()
    upload.credentials(HTTP_X_API_KEY=key)
    refused = upload.post("/api/v1/uploads", {"file": named(photo())}, format="multipart")
    assert refused.status_code == 402 and "monthly credits" in refused.json()["detail"]
    assert Task.objects.filter(upload__owner=user).count() == 2


def test_the_schema_documents_the_new_endpoints(user, client_for):
    schema = client_for(user).get("/api/v1/schema", HTTP_ACCEPT="application/json").json()
    for path in ("/v1.0/removebg", "/v1.0/account", "/api/v1/api-keys",
                 "/api/v1/api-keys/{id}"):
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "X-Api-Key"
    task = schema["components"]["schemas"]["Task"]["properties"]
    assert "foreground" in task and "confidence" in task


def test_every_task_reports_foreground_and_confidence(user, key, client_for, job_thread, client):
    """The same facts whichever endpoint made the task: API and admin."""
    jwt = client_for(user)
    upload = jwt.post("/api/v1/uploads", {"file": named(photo()), "crop": "false"},
                      format="multipart")
    assert upload.status_code == 202
    sync = keyed(key).post("/v1.0/removebg", {"image_file": named(photo())}, format="multipart")
    assert sync.status_code == 200
    deadline = time.monotonic() + 30
    while Task.objects.filter(status=Task.Status.COMPLETED).count() < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for task_id in (upload.json()["task_id"], sync["X-Task-Id"]):
        body = jwt.get(f"/api/v1/tasks/{task_id}").json()
        assert body["status"] == "completed"
        assert set(body["foreground"]) == {"top", "left", "width", "height"}
        assert body["foreground"]["width"] > 0
        assert 0.5 < body["confidence"] <= 1.0
    assert jwt.get(f"/api/v1/tasks/{sync['X-Task-Id']}").json()["foreground"] == {
        "top": int(sync["X-Foreground-Top"]), "left": int(sync["X-Foreground-Left"]),
        "width": int(sync["X-Foreground-Width"]), "height": int(sync["X-Foreground-Height"])}

    staff = make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    page = client.get(f"/admin/removal/task/{sync['X-Task-Id']}/change/").content.decode()
    fg = jwt.get(f"/api/v1/tasks/{sync['X-Task-Id']}").json()["foreground"]
    assert f"top {fg['top']}, left {fg['left']}, {fg['width']} × {fg['height']}" in page
    assert "of mask pixels decisive" in page


def test_image_url_and_bg_image_url_are_fetched_under_the_ssrf_rules(key, job_thread, settings):
    from tests.helpers import LocalHTTPServer

    background = make_image("PNG", size=(60, 60), color=(0, 0, 255))
    routes = {"/car.jpg": (200, {"Content-Type": "image/jpeg"}, photo()),
              "/bg.png": (200, {"Content-Type": "image/png"}, background)}
    with LocalHTTPServer("127.0.0.1", routes) as allowed, \
            LocalHTTPServer("127.0.0.2", routes) as private:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{allowed.port}"]
        client = keyed(key)
        response = client.post("/v1.0/removebg", {
            "image_url": allowed.url("/car.jpg"), "bg_image_url": allowed.url("/bg.png"),
            "format": "png"}, format="json")
        assert response.status_code == 200, response.content
        assert np.asarray(Image.open(io.BytesIO(response.content)))[0, 0].tolist() == [0, 0, 255]
        assert [r["path"] for r in allowed.requests] == ["/car.jpg", "/bg.png"]

        refused = client.post("/v1.0/removebg", {"image_url": private.url("/car.jpg")},
                              format="json")
        assert refused.status_code == 400
        assert "127.0.0.2" in refused.json()["errors"][0]["title"]
        assert private.requests == []
