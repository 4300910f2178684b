"""``quickbg`` (``client/``, run as ``python -m quickbg_client`` with PYTHONPATH=client) against
a live QuickBG (pytest-django's ``live_server``), a real worker process and the real model.

Model runs are kept few: every image is small, and each test's images are its own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from removal.api.idempotency import IdempotencyKey
from removal.models import Batch, Task
from tests.client.tools import (
    FlakyProxy,
    assert_cutout_png,
    client_env,
    fixture_names,
    json_lines,
    kill_mid_run,
    quickbg,
    quickbg_command,
    small_jpeg,
)
from tests.images import FIXTURES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def tasks_of(user) -> int:
    return Task.objects.filter(upload__owner=user).count()


def test_a_folder_is_mirrored_and_a_second_run_uploads_nothing(worker, live_server, user,
                                                               api_key, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(FIXTURES, photos)  # the shared photos (and their README.md, not an image)
    (photos / "sub" / "deeper").mkdir(parents=True)
    (photos / "sub" / "deeper" / "car.png").write_bytes(small_jpeg("car-1.jpg", fmt="PNG"))
    (photos / "sub" / "animal.webp").write_bytes(small_jpeg("animal-2.jpg", fmt="WEBP"))
    (photos / "sub" / "girl.BMP").write_bytes(small_jpeg("girl-1.jpg", fmt="BMP"))
    inputs = [*fixture_names(), "sub/deeper/car.png", "sub/animal.webp", "sub/girl.BMP"]
    out = tmp_path / "out"

    first = quickbg(live_server.url, api_key, "remove", str(photos), "-o", str(out), "-j", "4",
                    "--json")
    assert first.returncode == 0, first.stderr.decode()[-3000:]
    lines = json_lines(first.stdout)
    assert sorted(line["status"] for line in lines) == ["done"] * len(inputs)
    assert all(line["uploaded"] for line in lines)
    for name in inputs:
        stem = name.rsplit(".", 1)[0]
        assert_cutout_png(out / f"{stem}.png")
    assert not (out / "README.png").exists()
    assert b"7 done, 0 skipped, 0 failed" in first.stderr
    assert tasks_of(user) == len(inputs)
    # Small files go in batches (one key each), the others alone (one key each).
    singles = Task.objects.filter(upload__owner=user, batch=None).count()
    assert IdempotencyKey.objects.filter(owner=user).count() == \
        Batch.objects.filter(owner=user).count() + singles

    second = quickbg(live_server.url, api_key, "remove", str(photos), "-o", str(out), "--json")
    assert second.returncode == 0, second.stderr.decode()[-3000:]
    lines = json_lines(second.stdout)
    assert [line["status"] for line in lines] == ["skipped"] * len(inputs)
    assert not any(line["uploaded"] for line in lines)
    assert tasks_of(user) == len(inputs)  # nothing uploaded again

    # status, account, models, and stdin to stdout (the same bytes: the server reuses the
    # result it already has, so no model run).
    task_id = lines[0]["task_id"]
    status = quickbg(live_server.url, api_key, "status", task_id, "--json")
    assert status.returncode == 0 and f'"task_id": "{task_id}"'.encode() in status.stdout
    account = quickbg(live_server.url, api_key, "account")
    assert account.returncode == 0 and b"credits used this month: 7" in account.stdout
    models = quickbg(live_server.url, api_key, "models")
    assert models.returncode == 0 and b"isnet-general-use" in models.stdout.split()
    piped = quickbg(live_server.url, api_key, "remove", "-", "-o", "-",
                    stdin=(photos / "sub" / "animal.webp").read_bytes())
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stdout == (out / "sub" / "animal.png").read_bytes()


def test_a_killed_run_resumes_and_each_file_is_done_once(worker, live_server, user, api_key,
                                                         tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    names = []
    for i, name in enumerate(fixture_names()):
        (photos / f"{i}-{name}").write_bytes(small_jpeg(name, size=(200 + i, 150)))
        names.append(f"{i}-{name}")
    out = tmp_path / "out"
    # One by one (test_client_batches.py: in batches); killed once the first task exists.
    kill_mid_run(live_server.url, api_key, "remove", str(photos), "-o", str(out), "-j", "2",
                 "--batch-size", "1", "--json", when=lambda: tasks_of(user) > 0)
    accepted_before = tasks_of(user)
    assert 1 <= accepted_before <= len(names)

    again = quickbg(live_server.url, api_key, "remove", str(photos), "-o", str(out),
                    "--batch-size", "1", "--json")
    assert again.returncode == 0, again.stderr.decode()[-3000:]
    lines = json_lines(again.stdout)
    assert sorted(line["status"] for line in lines) == ["done"] * len(names)
    for name in names:
        assert_cutout_png(out / f"{name.rsplit('.', 1)[0]}.png")
    # Every file exactly once: one task, one Idempotency-Key each; nothing sent twice made a
    # second task (a file whose upload the kill cut short was replayed by its key).
    assert tasks_of(user) == len(names)
    assert IdempotencyKey.objects.filter(owner=user).count() == len(names)
    assert sorted(Task.objects.filter(upload__owner=user).values_list(
        "upload__original_filename", flat=True)) == sorted(names)


def test_429_retry_after_and_503s_are_waited_out(worker, live_server, user, api_key, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "car.jpg").write_bytes(small_jpeg("car-1.jpg", size=(210, 160)))
    answers = [(429, {"Retry-After": "2"}), (503, {}), (503, {}), (503, {})]
    with FlakyProxy(live_server.url, answers) as proxy:
        done = quickbg(proxy.url, api_key, "remove", str(tmp_path / "in"), "-o",
                       str(tmp_path / "out"), "--json")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    uploads = proxy.uploads()
    assert [status for _, status in uploads] == [429, 503, 503, 503, 202]
    assert uploads[1][0] - uploads[0][0] >= 2.0  # waited as told
    assert b"HTTP 429; retrying in 2." in done.stderr
    assert_cutout_png(tmp_path / "out" / "car.png")
    assert tasks_of(user) == 1  # five requests, one task


def test_corrupt_and_oversized_files_are_recorded_failed_and_the_run_goes_on(
        worker, live_server, user, api_key, tmp_path, settings):
    import sqlite3

    import numpy as np
    from PIL import Image

    settings.QUICKBG_MAX_UPLOAD_MB = 1
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "good.jpg").write_bytes(small_jpeg("girl-1.jpg", size=(180, 200)))
    (photos / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 50)
    noise = np.random.default_rng(1).integers(0, 255, (800, 800, 3), dtype=np.uint8)
    Image.fromarray(noise).save(photos / "huge.png")
    assert (photos / "huge.png").stat().st_size > 1024 * 1024

    run = quickbg(live_server.url, api_key, "remove", str(photos), "-o", str(tmp_path / "out"),
                  "--json")
    assert run.returncode == 1, run.stderr.decode()[-3000:]
    by_name = {os.path.basename(line["input"]): line for line in json_lines(run.stdout)}
    assert by_name["good.jpg"]["status"] == "done"
    assert by_name["corrupt.jpg"]["status"] == "failed"
    not_an_image = "File is not a valid image. Supported formats: JPEG, PNG, WEBP, BMP"
    too_big = "File size (1.8MB) exceeds maximum (1MB)"
    assert by_name["corrupt.jpg"]["error"] == not_an_image
    assert by_name["huge.png"]["status"] == "failed"
    assert by_name["huge.png"]["error"] == too_big
    assert b"1 done, 0 skipped, 2 failed" in run.stderr
    rows = dict(sqlite3.connect(tmp_path / "out" / ".quickbg-manifest.sqlite3").execute(
        "SELECT input, status || ': ' || coalesce(error, '') FROM files"))
    assert rows == {"good.jpg": "done: ", "corrupt.jpg": f"failed: {not_an_image}",
                    "huge.png": f"failed: {too_big}"}
    assert tasks_of(user) == 1


def test_watch_processes_a_file_dropped_in_later(worker, live_server, user, api_key, tmp_path):
    watched = tmp_path / "inbox"
    (watched / "sub").mkdir(parents=True)
    out = tmp_path / "out"
    # SIGINT as a terminal sends it, even when this test runs where SIGINT is ignored (a
    # background job): the child starts with the default disposition.
    proc = subprocess.Popen(
        quickbg_command("remove", str(watched), "-o", str(out), "--watch", "--json"),
        env=client_env(live_server.url, api_key), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stderr_lines: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60  # the first pass (an empty folder), then watching
        while not any(b"watching for new files" in line for line in stderr_lines):
            assert proc.poll() is None and time.monotonic() < deadline, stderr_lines
            time.sleep(0.05)
        staged = tmp_path / "staging.jpg"
        staged.write_bytes(small_jpeg("animal-2.jpg", size=(190, 140)))
        staged.rename(watched / "sub" / "dropped.jpg")  # how a finished copy arrives
        deadline = time.monotonic() + 120
        while not (out / "sub" / "dropped.png").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert (out / "sub" / "dropped.png").exists()
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: how a watch ends
        stdout = proc.stdout.read()
        proc.wait(timeout=30)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, b"".join(stderr_lines).decode()[-2000:]
    assert [(line["status"], os.path.basename(line["input"])) for line in json_lines(stdout)] \
        == [("done", "dropped.jpg")]
    assert_cutout_png(out / "sub" / "dropped.png")
    assert tasks_of(user) == 1


def test_the_library_removes_bytes_and_iterates_a_folder(worker, live_server, user, api_key,
                                                         tmp_path):
    import io

    import numpy as np
    from PIL import Image
    from quickbg_client import Client, FileResult

    image = small_jpeg("car-1.jpg", size=(220, 165))
    with Client(live_server.url, api_key) as client:
        png = client.remove(image, bg_color="ffffff", crop=False)
        result = Image.open(io.BytesIO(png))
        assert result.format == "PNG" and result.size == (220, 165)
        rgba = np.asarray(result.convert("RGBA"))
        assert rgba[:, :, 3].min() == 255 and tuple(rgba[0, 0, :3]) == (255, 255, 255)

        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "car.jpg").write_bytes(image)
        results = list(client.remove_folder(tmp_path / "in", tmp_path / "out", jobs=2,
                                            bg_color="ffffff", crop=False))
    # The same bytes and options as above, so the same Idempotency-Key: the server answered
    # with the first task again (no second task, no second model run).
    assert results == [FileResult(str(tmp_path / "in" / "car.jpg"), str(tmp_path / "out" /
                                  "car.png"), "done", results[0].task_id, None, True,
                                  results[0].seconds)]
    assert (tmp_path / "out" / "car.png").read_bytes() == png
    assert tasks_of(user) == 1
