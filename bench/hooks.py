"""Figures for image URLs, webhooks and result reuse (issue 12, parts 3-5).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/quickbg .venv/bin/pytest -p no:cacheprovider \\
        -q -s bench/hooks.py

Run with pytest (it needs the test database and the tests' fixtures); not part of ``make test``
(``testpaths`` is ``tests/``). Everything on loopback. It prints:

- **fetch**: ``removal.fetch.fetch_bytes`` of a 1 MB body from a local server (SSRF checks, one
  getaddrinfo, a new pinned connection per fetch) against a plain ``httpx.get`` of the same URL
  (a new connection too, the same already-loaded trust store): what the checks cost;
- **reuse**: ``POST /api/v1/uploads`` of an image whose result is reused (completed at once,
  result copied) against the same request when reuse is off (stored and queued): what reuse
  costs the request, next to the model's own processing time it saves (one real run);
- **webhooks**: from the event (the task's outcome recorded) to the receiver having the signed
  request, with an idle ``run_worker --webhooks-only`` process: the delivery latency.
"""

from __future__ import annotations

import io
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.utils import timezone
from PIL import Image

from removal import fetch
from removal.jobs import process_task
from removal.models import Task
from removal.services import webhooks
from tests.conftest import api, client_for, empty_queue, user  # noqa: F401 - fixtures
from tests.factories import make_task, make_upload
from tests.helpers import LocalHTTPServer, named, subprocess_env
from tests.images import fixture_bytes

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def ms(values) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    median = statistics.median(values)
    return f"median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms (n={len(values)})"


def test_fetch_overhead(settings):
    body = os.urandom(1024 * 1024)
    with LocalHTTPServer("127.0.0.1", {"/big": (200, {}, body)}) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        checked, plain = [], []
        trust = fetch._default_ssl_context()
        for _ in range(30):  # interleaved, so load from other processes hits both alike
            t = time.perf_counter()
            got = fetch.fetch_bytes(server.url("/big"), max_bytes=2 * 1024 * 1024)
            assert len(got) == len(body)
            checked.append(time.perf_counter() - t)
            t = time.perf_counter()
            answer = httpx.get(server.url("/big"), verify=trust)  # same trust store, loaded once
            assert len(answer.content) == len(body)
            plain.append(time.perf_counter() - t)
    print(f"\nfetch 1 MB, removal.fetch.fetch_bytes: {ms(checked)}")
    print(f"fetch 1 MB, plain httpx.get:            {ms(plain)}")


def test_reuse_cost_and_saving(user, client_for, settings, empty_queue):  # noqa: F811
    photo = io.BytesIO()
    Image.open(io.BytesIO(fixture_bytes("car-1.jpg"))).convert("RGB").save(photo, "JPEG")
    data = photo.getvalue()
    client = client_for(user)
    first = client.post("/api/v1/uploads", {"file": named(data, "car.jpg")}, format="multipart")
    assert process_task(first.json()["task_id"]) == "completed"
    processing = Task.objects.get(pk=first.json()["task_id"]).processing_time
    reused, queued = [], []
    for _ in range(15):
        for setting, times in ((True, reused), (False, queued)):
            settings.QUICKBG_REUSE_RESULTS = setting
            t = time.perf_counter()
            response = client.post("/api/v1/uploads", {"file": named(data, "car.jpg")},
                                   format="multipart")
            times.append(time.perf_counter() - t)
            assert response.json()["status"] == ("completed" if setting else "queued")
        Task.objects.filter(status=Task.Status.QUEUED).delete()  # stay under the task cap
        empty_queue.empty()
    print(f"\nupload of {len(data) // 1024} KB JPEG {Image.open(io.BytesIO(data)).size}, "
          f"result reused: {ms(reused)}")
    print(f"same upload, reuse off (stored and queued): {ms(queued)}")
    print(f"the model run it saves (processing_time of the first task): {processing:.2f} s")


def test_webhook_delivery_latency(user, settings, tmp_path):  # noqa: F811
    received: dict[str, float] = {}

    def hook(handler):
        received[handler.headers["webhook-id"]] = time.time()
        return 204, {}, b""

    with LocalHTTPServer("127.0.0.1", {"/hook": hook}) as receiver:
        allow = f"127.0.0.1:{receiver.port}"
        settings.QUICKBG_FETCH_ALLOW = [allow]
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "run_worker", "--webhooks-only"], cwd=ROOT,
            env=subprocess_env() | {"QUICKBG_FETCH_ALLOW": allow}, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)  # the worker is up and idle
            delays = []
            for _ in range(20):
                task = make_task(upload=make_upload(owner=user), status=Task.Status.COMPLETED,
                                 finished_at=timezone.now(), webhook_url=receiver.url("/hook"))
                emitted = time.time()
                webhooks.task_event_emit(task_id=task.pk)
                message_id = task.webhook_deliveries.get().message_id
                deadline = time.monotonic() + 30
                while message_id not in received and time.monotonic() < deadline:
                    time.sleep(0.005)
                delays.append(received[message_id] - emitted)
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
    print(f"\nwebhook, event recorded -> signed request at the receiver (idle worker): "
          f"{ms(delays)}")
