"""``POST /api/v1/batches`` with an ``Idempotency-Key``: as ``POST /api/v1/uploads`` has it
(``removal/api/idempotency.py``). A repeat replays the first answer and makes no second batch;
the key with other content is a 422; a refused first attempt frees the key."""

from __future__ import annotations

import io
import zipfile

import pytest

from removal.models import Batch, IdempotencyKey, Task, Upload
from tests.helpers import named
from tests.images import make_image

pytestmark = pytest.mark.django_db(transaction=True)

MISMATCH = {"detail": "This Idempotency-Key was already used with a different request body"}


def images(*colors) -> list[bytes]:
    return [make_image("JPEG", (120, 90), color=color) for color in colors]


def post_batch(client, contents: list[bytes], key: str | None, **fields):
    data = {"files": [named(content, f"photo-{n}.jpg") for n, content in enumerate(contents)],
            **fields}
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post("/api/v1/batches", data, format="multipart", **headers)


def test_a_repeated_batch_replays_the_first_answer_and_makes_no_second_batch(user, client_for):
    client = client_for(user)
    members = images((200, 10, 10), (10, 200, 10), (10, 10, 200))
    first = post_batch(client, members, "batch-key-1", format="webp")
    again = post_batch(client, members, "batch-key-1", format="webp")
    assert first.status_code == again.status_code == 202, first.content
    assert again.json() == first.json()
    assert len(first.json()["task_ids"]) == 3
    assert (Batch.objects.count(), Upload.objects.count(), Task.objects.count()) == (1, 3, 3)
    assert IdempotencyKey.objects.get(owner=user, key="batch-key-1").response_status == 202


def test_the_same_key_with_other_members_order_or_options_is_422(user, client_for):
    client = client_for(user)
    members = images((200, 10, 10), (10, 200, 10))
    first = post_batch(client, members, "batch-key-2")
    assert first.status_code == 202, first.content
    refused = [
        post_batch(client, [members[0], *images((1, 2, 3))], "batch-key-2"),  # a member changed
        post_batch(client, members[::-1], "batch-key-2"),  # the same members, another order
        post_batch(client, members[:1], "batch-key-2"),  # one member left out
        post_batch(client, members, "batch-key-2", format="webp"),  # other options
    ]
    for response in refused:
        assert response.status_code == 422, response.content
        assert response.json() == MISMATCH
    assert (Batch.objects.count(), Task.objects.count()) == (1, 2)


def test_names_do_not_count_only_the_bytes_as_for_uploads(user, client_for):
    client = client_for(user)
    content = images((90, 90, 200))[0]
    first = client.post("/api/v1/batches", {"files": [named(content, "a.jpg")]},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="batch-key-3")
    renamed = client.post("/api/v1/batches", {"files": [named(content, "b.jpg")]},
                          format="multipart", HTTP_IDEMPOTENCY_KEY="batch-key-3")
    assert renamed.status_code == 202 and renamed.json() == first.json()
    assert Batch.objects.count() == 1


def test_an_archive_batch_is_replayed_and_another_archive_is_422(user, client_for):
    client = client_for(user)

    def archive(*colors) -> io.BytesIO:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for n, content in enumerate(images(*colors)):
                zf.writestr(f"img-{n}.jpg", content)
        return named(buffer.getvalue(), "images.zip")

    first = client.post("/api/v1/batches", {"archive": archive((5, 5, 250), (250, 5, 5))},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="zip-key")
    again = client.post("/api/v1/batches", {"archive": archive((5, 5, 250), (250, 5, 5))},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="zip-key")
    other = client.post("/api/v1/batches", {"archive": archive((5, 250, 5))},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="zip-key")
    assert first.status_code == again.status_code == 202, first.content
    assert again.json() == first.json() and first.json()["count"] == 2
    assert other.status_code == 422 and other.json() == MISMATCH
    assert (Batch.objects.count(), Task.objects.count()) == (1, 2)


def test_an_upload_key_is_not_a_batch_key(user, client_for):
    client = client_for(user)
    content = images((40, 160, 40))[0]
    upload = client.post("/api/v1/uploads", {"file": named(content)}, format="multipart",
                         HTTP_IDEMPOTENCY_KEY="shared-key")
    batch = post_batch(client, [content], "shared-key")
    assert upload.status_code == 202
    assert batch.status_code == 422 and batch.json() == MISMATCH
    assert (Batch.objects.count(), Task.objects.count()) == (0, 1)


def test_a_refused_batch_frees_its_key(user, client_for):
    client = client_for(user)
    refused = post_batch(client, [b"not an image", b"nor this"], "retry-batch")
    assert refused.status_code == 400
    assert "No acceptable image in the batch" in refused.json()["detail"]
    assert IdempotencyKey.objects.count() == 0
    fixed = post_batch(client, images((120, 30, 30)), "retry-batch")
    assert fixed.status_code == 202, fixed.content
    assert (Batch.objects.count(), Task.objects.count()) == (1, 1)


def test_a_batch_still_in_progress_is_409(user, client_for):
    client = client_for(user)
    members = images((70, 70, 70))
    first = post_batch(client, members, "busy")
    assert first.status_code == 202, first.content
    # As if the first request were still running: its record has no answer yet.
    IdempotencyKey.objects.filter(owner=user, key="busy").update(response_status=None,
                                                                 response_body=None)
    response = post_batch(client, members, "busy")
    assert response.status_code == 409
    assert response.json()["detail"] == "A request with this Idempotency-Key is still in progress"
    assert Batch.objects.count() == 1
