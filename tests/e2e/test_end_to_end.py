"""The whole flow over HTTP with a real RQ worker and the real ISNet model."""

from __future__ import annotations

import io
from urllib.parse import urlparse

import numpy as np
import pytest
import requests
from PIL import Image

from removal.models import Task
from tests.images import fixture_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def assert_car_cutout(png: bytes) -> None:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.mode == "RGBA"
    alpha = np.asarray(image)[:, :, 3]
    h, w = alpha.shape
    # Transparent in every corner, opaque in the middle of the car.
    for corner in (alpha[:10, :10], alpha[:10, -10:], alpha[-10:, :10], alpha[-10:, -10:]):
        assert corner.max() == 0
    centre = alpha[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10]
    assert centre.min() >= 250


def poll_until_done(client, task_id: str) -> dict:
    response = client.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200
    return response.json()


def test_upload_process_and_download_on_local_storage(user, client_for, run_worker, empty_queue):
    client = client_for(user)
    response = client.post(
        "/api/v1/uploads", {"file": _named(fixture_bytes("car-1.jpg"), "car-1.jpg")},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["message"] == "Image queued for processing"
    assert empty_queue.count == 1  # enqueued after the request's transaction committed

    queued = client.get(f"/api/v1/tasks/{body['task_id']}").json()
    assert queued["status"] == "queued"
    assert queued["presigned_url"] is None

    run_worker()

    task = poll_until_done(client, body["task_id"])
    assert task["status"] == "completed", task
    assert task["progress"] == 100
    assert task["processing_time"] > 0
    assert task["upload_id"] == body["upload_id"]

    # The presigned (signed, expiring) URL needs no token.
    download = client.__class__().get(urlparse(task["presigned_url"]).path)
    assert download.status_code == 200
    png = b"".join(download.streaming_content)
    assert_car_cutout(png)

    # The stable result URL redirects to a fresh download URL.
    redirect = client.get(f"/api/v1/tasks/{body['task_id']}/result")
    assert redirect.status_code == 302

    row = Task.objects.get(pk=body["task_id"])
    assert row.attempts == 1
    assert row.result_key == f"results/{row.pk}.png"


def _named(data: bytes, name: str) -> io.BytesIO:
    buffer = io.BytesIO(data)
    buffer.name = name
    return buffer


def test_upload_process_and_download_on_s3(user, client_for, run_worker, s3):
    client = client_for(user)
    response = client.post(
        "/api/v1/uploads", {"file": _named(fixture_bytes("car-1.jpg"), "car-1.jpg")},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    task_id = response.json()["task_id"]

    run_worker()

    task = poll_until_done(client, task_id)
    assert task["status"] == "completed", task
    url = task["presigned_url"]
    assert "X-Amz-Signature" in url and "X-Amz-Expires=3600" in url
    download = requests.get(url, timeout=30)  # real HTTP to the moto server
    assert download.status_code == 200
    assert_car_cutout(download.content)
    stored = s3.get_object(Bucket="quickbg-test", Key=f"results/{task_id}.png")["Body"].read()
    assert stored == download.content


def test_s3_key_upload_through_a_presigned_post(user, client_for, run_worker, s3):
    client = client_for(user)
    issued = client.post("/api/v1/uploads/presign", {"filename": "my car.jpg"}, format="json")
    assert issued.status_code == 201, issued.content
    grant = issued.json()
    assert grant["s3_key"].startswith(f"incoming/{user.pk}/")
    # The client uploads straight to S3 (moto over real HTTP) with the presigned POST.
    sent = requests.post(grant["url"], data=grant["fields"],
                         files={"file": ("my car.jpg", fixture_bytes("car-1.jpg"))}, timeout=30)
    assert sent.status_code in (200, 204), sent.text

    response = client.post("/api/v1/uploads", {"s3_key": grant["s3_key"]}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    upload = client.get(f"/api/v1/uploads/{body['upload_id']}").json()
    assert upload["format"] == "JPEG"

    run_worker()

    task = poll_until_done(client, body["task_id"])
    assert task["status"] == "completed", task
    download = requests.get(task["presigned_url"], timeout=30)
    assert download.status_code == 200
    assert_car_cutout(download.content)
