"""Output options on POST /uploads: validated, stored on the task, echoed, and honoured."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from removal import jobs, runner, storage
from removal.models import Task
from removal.services.tasks import task_enqueue
from tests.factories import make_upload
from tests.helpers import DiscModel, named, reap, subprocess_env
from tests.images import fixture_bytes, make_image, soft_disc_photo

ROOT = Path(__file__).resolve().parents[2]



@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [("format", "gif"), ("channels", "rgb"), ("bg_color", "not-a-colour"), ("crop", "maybe"),
     ("crop_margin", "90%"), ("crop_margin", "-3"), ("refine", "2"),
     ("alpha_matting", "yes please"),
     ("alpha_matting_erode_size", "1000"), ("decontaminate", "maybe")],
)
def test_invalid_option_is_400_naming_the_field(user, client_for, empty_queue, field, value):
    response = client_for(user).post("/api/v1/uploads",
                                     {"file": named(make_image()), field: value},
                                     format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{field}: ")
    assert Task.objects.count() == 0 and empty_queue.count == 0


@pytest.mark.django_db
def test_options_are_stored_and_echoed(user, client_for):
    client = client_for(user)
    response = client.post("/api/v1/uploads", {
        "file": named(make_image()), "format": "webp", "channels": "alpha", "bg_color": "#00ff00",
        "crop": "false", "crop_margin": "5%", "refine": "false",
    }, format="multipart")
    assert response.status_code == 202, response.content
    task = client.get(f"/api/v1/tasks/{response.json()['task_id']}").json()
    options = task["options"]
    assert (options["format"], options["channels"], options["bg_color"], options["crop"],
            options["crop_margin"], options["refine"], options["alpha_matting"]) == (
        "webp", "alpha", "#00ff00", False, "5%", False, False)
    assert task["model"] == "isnet-general-use" and "model" not in options


@pytest.mark.django_db(transaction=True)
def test_decontaminate_is_accepted_and_changes_only_the_stored_edge_pixels(
    user, client_for, empty_queue, monkeypatch
):
    monkeypatch.setattr(runner, "get_segmenter",
                        lambda name=None: DiscModel(radius=0.3, edge=0.08))
    client = client_for(user)
    photo = soft_disc_photo()
    bad = client.post("/api/v1/uploads", {"file": named(photo, "disc.png"),
                                          "decontaminate": "sometimes"}, format="multipart")
    assert bad.status_code == 400
    assert bad.json()["detail"] == "decontaminate: must be true or false"
    ids = {
        flag: client.post("/api/v1/uploads", {"file": named(photo, "disc.png"), "crop": "false",
                                              **fields}, format="multipart").json()["task_id"]
        for flag, fields in {True: {}, False: {"decontaminate": "false"}}.items()
    }
    for job_id in empty_queue.get_job_ids():  # the real job entry point, stand-in model
        jobs.process_task(empty_queue.fetch_job(job_id).args[0])

    stored = {}
    for flag, task_id in ids.items():
        task = client.get(f"/api/v1/tasks/{task_id}").json()
        assert task["status"] == "completed" and task["options"]["decontaminate"] is flag
        result_key = Task.objects.get(pk=task_id).result_key
        stored[flag] = np.asarray(Image.open(io.BytesIO(storage.read(result_key)))).astype(int)
    alpha = stored[True][:, :, 3]
    assert np.array_equal(alpha, stored[False][:, :, 3])
    band = (alpha > 0) & (alpha < 248)
    assert np.array_equal(stored[True][~band], stored[False][~band])
    red = np.array([200, 40, 40])
    plain = np.abs(stored[False][:, :, :3][band] - red).mean()
    cleaned = np.abs(stored[True][:, :, :3][band] - red).mean()
    assert plain > 40 and cleaned < 0.5 * plain  # the white of the old background is gone


@pytest.mark.django_db
def test_the_model_is_chosen_by_name_and_an_unknown_one_is_400(user, client_for):
    client = client_for(user)
    response = client.post("/api/v1/uploads", {"file": named(make_image()),
                                               "model": "isnet-general-use"},
                           format="multipart")
    assert response.status_code == 202, response.content
    task = client.get(f"/api/v1/tasks/{response.json()['task_id']}").json()
    assert task["model"] == "isnet-general-use"

    response = client.post("/api/v1/uploads", {"file": named(make_image()),
                                               "model": "isnet-tiny"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"] == ('model: Unknown model "isnet-tiny"; GET /api/v1/models '
                                         'lists the models')
    # Known, but no live worker serves it (tests/models/test_models.py runs the served case).
    response = client.post("/api/v1/uploads", {"file": named(make_image()),
                                               "model": "isnet-general-use-quant"},
                           format="multipart")
    assert response.status_code == 503
    assert "run_worker --models isnet-general-use-quant" in response.json()["detail"]
    assert Task.objects.filter(upload__owner=user).count() == 1


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_options_shape_the_result(user, client_for, run_worker):
    client = client_for(user)
    car = fixture_bytes("car-1.jpg")
    ids = {
        name: client.post("/api/v1/uploads", {"file": named(car), **fields},
                          format="multipart").json()["task_id"]
        for name, fields in {
            "webp-uncropped": {"format": "webp", "crop": "false"},
            "mask": {"channels": "alpha", "crop": "false"},
            "green": {"bg_color": "00ff00", "crop": "false"},
            "cropped": {},
        }.items()
    }
    run_worker()
    tasks = {name: Task.objects.get(pk=task_id) for name, task_id in ids.items()}
    assert all(t.status == Task.Status.COMPLETED for t in tasks.values()), {
        n: t.error_message for n, t in tasks.items()}
    original = Image.open(io.BytesIO(car))

    webp = Image.open(io.BytesIO(storage.read(tasks["webp-uncropped"].result_key)))
    assert webp.format == "WEBP" and webp.size == original.size
    assert tasks["webp-uncropped"].result_key.endswith(".webp")

    mask = Image.open(io.BytesIO(storage.read(tasks["mask"].result_key)))
    assert mask.mode == "L" and mask.size == original.size
    values = np.asarray(mask)
    assert values[0, 0] == 0 and values[values.shape[0] // 2, values.shape[1] // 2] >= 250

    green = np.asarray(Image.open(io.BytesIO(storage.read(tasks["green"].result_key))))
    assert tuple(green[0, 0][:3]) == (0, 255, 0)

    cropped = tasks["cropped"]
    bbox = cropped.metrics["bbox"]
    result = Image.open(io.BytesIO(storage.read(cropped.result_key)))
    assert result.width < original.width or result.height < original.height
    assert result.size == (min(bbox[2] + 10, original.width) - max(bbox[0] - 10, 0),
                           min(bbox[3] + 10, original.height) - max(bbox[1] - 10, 0))
    for key in ("memory_usage_mb", "original_size", "processed_size", "compression_ratio",
                "stage_timings", "model", "bbox", "confidence"):
        assert key in cropped.metrics, key
    api = client.get(f"/api/v1/tasks/{cropped.pk}").json()
    assert api["metrics"]["bbox"] == bbox and api["metrics"]["confidence"] > 0.9


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_a_polling_client_sees_progress_move(user, tmp_path):
    upload = make_upload(owner=user)
    storage.write(upload.original_key, fixture_bytes("cloth-1.jpg"))
    task = Task.objects.create(upload=upload)
    task_enqueue(task=task)
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_worker", "--burst", "--name", f"p-{tmp_path.name}"],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    seen = []
    deadline = time.monotonic() + 180
    try:
        while worker.poll() is None and time.monotonic() < deadline:
            row = Task.objects.values_list("status", "progress").get(pk=task.pk)
            if not seen or seen[-1] != row:
                seen.append(row)
            time.sleep(0.02)
        worker.wait(timeout=60)
    finally:
        reap(worker)
    seen.append(Task.objects.values_list("status", "progress").get(pk=task.pk))
    # The fast steps around the model run may fall between two polls; what a poller always
    # sees is queued at 0, processing part-way (the model run holds one value for seconds),
    # then completed at 100 - never going backwards.
    progress = [p for _, p in seen]
    assert seen[0] == ("queued", 0), seen
    assert any(status == "processing" and 0 < p < 100 for status, p in seen), seen
    assert progress == sorted(progress), seen
    assert seen[-1] == ("completed", 100)
