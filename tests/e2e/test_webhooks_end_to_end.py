"""Webhooks end to end: a real worker fetches an ``image_url`` and sends the signed event; the
same image again is reused at once, with its own event."""

from __future__ import annotations

import pytest

from removal import storage
from removal.models import Task
from tests.helpers import LocalHTTPServer, deliver_all


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_real_worker_image_url_webhook_and_reuse(user, client_for, settings, receiver_for,
                                                 run_worker, empty_queue, webhooks_queue):
    """The whole of issue 12 parts 3-5 through the real service: an image URL from a local
    server, the real model in a real worker (which also drains the webhooks queue), a signed
    task.completed event, then the same image again: reused at once, with its own event."""
    import io

    from PIL import Image

    from tests.images import fixture_bytes

    buffer = io.BytesIO()
    Image.open(io.BytesIO(fixture_bytes("car-1.jpg"))).convert("RGB").crop(
        (0, 0, 300, 200)).save(buffer, "JPEG")
    receiver = receiver_for(user)
    with LocalHTTPServer("127.0.0.1", {"/car.jpg": (200, {}, buffer.getvalue())}) as images:
        settings.QUICKBG_FETCH_ALLOW = [*settings.QUICKBG_FETCH_ALLOW,
                                        f"127.0.0.1:{images.port}"]
        client = client_for(user)
        first = client.post("/api/v1/uploads", {"image_url": images.url("/car.jpg"),
                                                "webhook_url": receiver.url()}, format="json")
        assert first.status_code == 202 and first.json()["status"] == "queued"
        run_worker()
        second = client.post("/api/v1/uploads", {"image_url": images.url("/car.jpg"),
                                                 "webhook_url": receiver.url()}, format="json")
    assert second.json()["status"] == "completed"
    assert empty_queue.count == 0
    deliver_all()

    done = client.get(f"/api/v1/tasks/{first.json()['task_id']}").json()
    cached = client.get(f"/api/v1/tasks/{second.json()['task_id']}").json()
    assert done["status"] == "completed" and done["cached"] is False
    assert done["metrics"]["model_sha256"] == modelstore_sha()
    assert cached["cached"] is True and cached["processing_time"] == 0.0
    first_png = storage.read(Task.objects.get(pk=done["task_id"]).result_key)
    assert storage.read(Task.objects.get(pk=cached["task_id"]).result_key) == first_png
    assert [(p["type"], p["data"]["task_id"], p["data"]["cached"]) for p in receiver.verified] \
        == [("task.completed", done["task_id"], False),
            ("task.completed", cached["task_id"], True)]
    link = receiver.verified[0]["data"]["presigned_url"].removeprefix(settings.QUICKBG_PUBLIC_URL)
    download = client.get(link)
    assert download.status_code == 200 and b"".join(download.streaming_content) == first_png


def modelstore_sha() -> str:
    from removal import modelstore

    return modelstore.MODELS[modelstore.DEFAULT_MODEL].sha256
