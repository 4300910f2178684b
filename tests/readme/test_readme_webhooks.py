"""The README's webhooks section, run verbatim: the curl block against a live server, the Python
receiver as a process, and ``run_worker --webhooks-only`` as the only worker on the webhooks
queue. The task itself is processed by the real job (real model) in this process."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from removal.jobs import process_task
from removal.models import Task, WebhookDelivery
from removal.services import webhooks
from tests.factories import PASSWORD
from tests.helpers import LocalHTTPServer, free_port, readme_block, subprocess_env
from tests.live import ROOT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def readme_command(line_start: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith(line_start)]
    return line.split()


def start(args, env, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, start_new_session=True, **kwargs)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            return proc.stdout.readline().strip()
        assert proc.poll() is None, "the receiver exited"
    raise AssertionError("no webhook reached the README receiver in time")


def wait_for_port(port: int, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the receiver exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def test_readme_webhooks_sequence_and_receiver(live_server, user, settings, tmp_path):
    import io

    from PIL import Image

    from tests.images import fixture_bytes

    photo = io.BytesIO()
    Image.open(io.BytesIO(fixture_bytes("car-1.jpg"))).convert("RGB").crop(
        (0, 0, 300, 200)).save(photo, "JPEG")
    port = free_port()
    hook_url = f"http://127.0.0.1:{port}/events"
    secret = webhooks.secret_get(owner=user).secret
    (tmp_path / "receiver.py").write_text(readme_block("receiver-start", "receiver-end", "python"))
    procs = []
    with LocalHTTPServer("127.0.0.1", {"/car.jpg": (200, {}, photo.getvalue())}) as images:
        allow = f"127.0.0.1:{images.port},127.0.0.1:{port}"
        settings.QUICKBG_FETCH_ALLOW = allow.split(",")
        env = subprocess_env() | {"QUICKBG_FETCH_ALLOW": allow,
                                  "QUICKBG_PUBLIC_URL": live_server.url}
        try:
            procs.append(start([sys.executable, str(tmp_path / "receiver.py")],
                               env | {"QUICKBG_WEBHOOK_SECRET": secret, "PORT": str(port)},
                               stdout=subprocess.PIPE, text=True))
            wait_for_port(port, procs[0])  # else the first attempt may find nobody listening
            command = readme_command("python manage.py run_worker --webhooks-only")
            procs.append(start([sys.executable, *command[1:]], env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            script = readme_block("webhooks-start", "webhooks-end")
            proc = subprocess.run(
                ["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                timeout=120, env=env | {
                    "QUICKBG": live_server.url, "QUICKBG_USER": user.username,
                    "QUICKBG_PASSWORD": PASSWORD, "HOOK_URL": hook_url,
                    "IMAGE_URL": images.url("/car.jpg")})
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert f'"url":"{hook_url}"' in proc.stdout.replace(" ", "")
            assert f"secret {secret[:6]}..." in proc.stdout
            (task,) = Task.objects.all()
            assert task.webhook_url == hook_url and task.status == Task.Status.QUEUED

            assert process_task(str(task.pk)) == "completed"  # the real model, in this process
            line = read_line(procs[0], timeout=60)
            # The receiver prints before it answers: stopping it now could cut off its 204, and
            # the worker would (rightly) record a failed attempt and schedule a retry.
            deadline = time.monotonic() + 30
            ended = [WebhookDelivery.Status.SUCCEEDED, WebhookDelivery.Status.FAILED]
            while (not WebhookDelivery.objects.filter(status__in=ended).exists()
                   and time.monotonic() < deadline):
                time.sleep(0.1)
        finally:
            for p in procs:
                stop(p)
    event, task_id, link = line.split(" ")
    assert (event, task_id) == ("task.completed", str(task.pk))
    deliveries = list(WebhookDelivery.objects.values("url", "attempt", "status", "error"))
    assert len(deliveries) == 1, deliveries  # standing endpoint == webhook_url: one delivery
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED and delivery.status_code == 204
    png = requests.get(link, timeout=30)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
