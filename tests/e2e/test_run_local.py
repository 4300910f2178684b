"""`make run` (``manage.py run_local``): starts Redis, the API and a worker, prints the URLs, a
demo login and the export lines for hand-run commands, restarts a worker that dies, stops
everything cleanly on Ctrl-C, and reuses its state on a second run without ghost workers.

These are the only tests that run QuickBG on SQLite: the embedded default is what they test."""

from __future__ import annotations

import io
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import redis
import requests
from PIL import Image

from tests.helpers import free_port, subprocess_env
from tests.images import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
METRICS_TOKEN = "run-local-test-metrics-token"  # health's details (worker count) need it
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def local_env(tmp_path: Path, **extra: str) -> dict:
    """`make run`'s own defaults: no REDIS_URL (it starts one), no DATABASE_URL (SQLite)."""
    env = subprocess_env() | {"PORT": str(free_port()), "QUICKBG_QUEUE": "quickbg",
                              "QUICKBG_STATE_DIR": str(tmp_path / "state"),
                              "QUICKBG_METRICS_TOKEN": METRICS_TOKEN}
    for name in ("REDIS_URL", "DATABASE_URL", "QUICKBG_MEDIA_ROOT", "HOST"):
        env.pop(name, None)
    env.update(extra)
    return env


def reap(proc: subprocess.Popen) -> None:
    """Stop run_local and everything it started, whatever state the test left them in."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    groups = set()
    for child in family:
        try:
            groups.add(os.getpgid(child.pid))
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    psutil.wait_procs(family, timeout=10)


@pytest.fixture
def run_local():
    """``run_local(env, log, *args)`` starts ``manage.py run_local`` in its own session, like a
    terminal's foreground job; the teardown reaps it and its children even if the test fails."""
    started: list[subprocess.Popen] = []

    def start(env: dict, log: Path, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_local", *args], cwd=ROOT, env=env,
            stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115 - closed on exit
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        reap(proc)


def wait_for_log(log: Path, proc: subprocess.Popen, needle: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if needle in text:
            return text
        assert proc.poll() is None, text
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} not in:\n{log.read_text(errors='replace')}")


def wait_for_health(port: int, workers: int | None = None, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        try:
            response = requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5,
                                    headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            body = response.json()
            queue = body.get("details", {}).get("queue") or {}
            if response.status_code == 200 and (workers is None or queue.get("workers") == workers):
                return body
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"health never reached workers={workers}: {body}")


def ctrl_c(proc: subprocess.Popen) -> None:
    """What a terminal does: SIGINT to the foreground process group (run_local's own)."""
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=90) == 0


def children_of(proc: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


def hand_env(export_line: str) -> dict:
    """The environment of a shell that ran the banner's ``export ...`` line (and nothing else
    of this test's world: no REDIS_URL or DATABASE_URL of its own)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTEST") and k not in ("REDIS_URL", "DATABASE_URL",
                                                        "DJANGO_SETTINGS_MODULE")}
    words = shlex.split(export_line)
    assert words[0] == "export"
    env.update(word.split("=", 1) for word in words[1:])
    return env


def test_make_run_starts_everything_and_ctrl_c_stops_it_cleanly(run_local, tmp_path):
    env = local_env(tmp_path)
    port = int(env["PORT"])
    log = tmp_path / "first.log"
    proc = run_local(env, log)
    banner = wait_for_log(log, proc, "manage.py reconcile_tasks --dry-run")
    for url in (f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/api/v1/docs",
                f"http://127.0.0.1:{port}/admin/"):
        assert url in banner
    assert "(superuser; password kept in" in banner and "staff" not in banner
    assert "WARNING: QuickBG is listening" not in banner
    password = re.search(r"Demo login: demo / (\S+)", banner).group(1)
    redis_port = int(re.search(r"Started redis-server on port (\d+)", banner).group(1))
    assert redis_port != 6379
    health = wait_for_health(port, workers=1)
    assert health["checks"]["database"] == "ok"
    # Loopback only by default: the same port on another loopback address is closed.
    assert port_open(port) and not port_open(port, "127.0.0.2")

    # The banner's own curl lines work as printed.
    lines = banner[banner.index("TOKEN=$(curl"):].splitlines()
    printed = "\n".join(line.strip() for line in lines[:3])  # the TOKEN command
    proc_curl = subprocess.run(["bash", "-e", "-c", printed + '\necho "token:${#TOKEN}"'],
                               capture_output=True, text=True, timeout=60)
    assert proc_curl.returncode == 0, proc_curl.stderr
    assert int(re.search(r"token:(\d+)", proc_curl.stdout).group(1)) > 100
    # ... and its QUICKBG export line, for the README's curl block, gives the demo login.
    quickbg_line = next(line.strip() for line in banner.splitlines()
                        if line.strip().startswith("export QUICKBG="))
    shown = subprocess.run(["bash", "-e", "-c", quickbg_line + '\necho "$QUICKBG $QUICKBG_USER '
                            '$QUICKBG_PASSWORD"'], cwd=ROOT, capture_output=True, text=True)
    assert shown.stdout.split() == [f"http://127.0.0.1:{port}", "demo", password], shown.stderr

    # A command run by hand with the banner's export line reaches this run's Redis (its worker
    # is registered there) and its SQLite database (the demo user), not 127.0.0.1:6379.
    export_line = next(line.strip() for line in banner.splitlines()
                       if line.strip().startswith("export DEBUG=true REDIS_URL="))
    probe = ("from django.conf import settings; from django_rq import get_queue; "
             "from rq import Worker; from accounts.models import User; "
             "q = get_queue(settings.QUICKBG_QUEUE); "
             "print('port', q.connection.connection_pool.connection_kwargs['port']); "
             "print('workers', sorted(w.name for w in Worker.all(connection=q.connection))); "
             "print('demo', User.objects.filter(username='demo', is_superuser=True).count())")
    for hand in (hand_env(export_line),
                 # Without the export line, REDIS_URL comes from var/redis-url.
                 {k: v for k, v in hand_env(export_line).items() if k != "REDIS_URL"}):
        out = subprocess.run([sys.executable, "manage.py", "shell", "-c", probe], cwd=ROOT,
                             env=hand, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert f"port {redis_port}" in out.stdout
        assert f"workers ['local-{proc.pid}-0']" in out.stdout
        assert "demo 1" in out.stdout
    dry_run = subprocess.run([sys.executable, "manage.py", "reconcile_tasks", "--dry-run"],
                             cwd=ROOT, env=hand_env(export_line), capture_output=True, text=True,
                             timeout=120)
    assert dry_run.returncode == 0, dry_run.stderr

    # A registration whose process is gone, as an unclean stop leaves in Redis's saved data.
    from rq import Queue, Worker

    connection = redis.Redis(port=redis_port)
    Worker([Queue("quickbg", connection=connection)], name="ghost-of-a-killed-run",
           connection=connection).register_birth()
    connection.close()
    children = children_of(proc)
    ctrl_c(proc)
    text = log.read_text(errors="replace")
    assert "Stopping QuickBG" in text
    assert "Traceback" not in text and "ConnectionError" not in text, text
    assert not port_open(port) and not port_open(redis_port)
    assert not any(child.is_running() for child in children)

    # A second run reuses the demo login and the Redis port, and shows no ghost workers.
    log = tmp_path / "second.log"
    proc = run_local(env, log)
    banner = wait_for_log(log, proc, "manage.py reconcile_tasks --dry-run")
    assert f"Demo login: demo / {password}" in banner
    assert f"Started redis-server on port {redis_port}" in banner
    assert "Removed stale worker registration ghost-of-a-killed-run" in banner
    wait_for_health(port, workers=1)
    connection = redis.Redis(port=redis_port)
    assert [w.name for w in Worker.all(connection=connection)] == [f"local-{proc.pid}-0"]
    connection.close()
    ctrl_c(proc)
    assert "Traceback" not in log.read_text(errors="replace")


def small_jpegs(count: int) -> list[bytes]:
    """The shared photos scaled to about 200 px wide (each image different): the model run is
    the same, the upload tiny. Whole photos, not crops: a crop of background alone is (rightly)
    a failed task, "No foreground found in the image"."""
    photos = sorted(FIXTURES.glob("*.jpg"))
    assert photos, f"no fixtures in {FIXTURES}"
    images = []
    for n in range(count):
        with Image.open(photos[n % len(photos)]) as photo:
            width = 200 + n
            crop = photo.convert("RGB").resize((width, width * photo.height // photo.width))
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


class Client:
    """The API over HTTP, counting every status code it sees."""

    def __init__(self, base: str, password: str):
        self.base = base
        self.codes: Counter[int] = Counter()
        self.lock = threading.Lock()
        token = requests.post(f"{base}/api/v1/auth/token",
                              json={"username": "demo", "password": password}, timeout=30)
        assert token.status_code == 200, token.text
        self.headers = {"Authorization": f"Bearer {token.json()['access']}"}

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(method, self.base + path, headers=self.headers, timeout=60,
                                    **kwargs)
        with self.lock:
            self.codes[response.status_code] += 1
        return response

    def upload(self, image: bytes) -> requests.Response:
        return self.call("POST", "/api/v1/uploads",
                         files={"file": ("crop.jpg", image, "image/jpeg")})

    def wait_completed(self, task_ids: list[str], timeout: float = 300) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            statuses = {tid: self.call("GET", f"/api/v1/tasks/{tid}").json()["status"]
                        for tid in task_ids}
            if all(status in ("completed", "failed") for status in statuses.values()):
                break
            time.sleep(1)
        return statuses


def test_make_run_on_sqlite_takes_concurrent_uploads_and_restarts_a_killed_worker(
        run_local, tmp_path):
    env = local_env(tmp_path, QUICKBG_UPLOAD_RATE="1000/min", QUICKBG_AUTH_RATE="1000/min",
                    QUICKBG_MAX_QUEUED_TASKS="100")
    port = int(env["PORT"])
    log = tmp_path / "run.log"
    proc = run_local(env, log)
    banner = wait_for_log(log, proc, "Demo login:")
    assert "sqlite:///" in banner  # the embedded default, not the test's PostgreSQL
    password = re.search(r"Demo login: demo / (\S+)", banner).group(1)
    wait_for_health(port, workers=1)
    client = Client(f"http://127.0.0.1:{port}", password)

    # 8 uploads at once from 8 threads, while 8 threads poll the task list and each task.
    images = small_jpegs(8)
    task_ids: list[str] = []
    upload_codes: list[int] = []
    stop = threading.Event()
    start = threading.Barrier(8)

    def upload(image: bytes) -> None:
        start.wait()
        response = client.upload(image)
        upload_codes.append(response.status_code)
        if response.status_code == 202:
            task_ids.append(response.json()["task_id"])

    def poll() -> None:
        while not stop.is_set():
            client.call("GET", "/api/v1/tasks")
            for tid in list(task_ids):
                client.call("GET", f"/api/v1/tasks/{tid}")
            time.sleep(0.05)

    pollers = [threading.Thread(target=poll) for _ in range(8)]
    uploaders = [threading.Thread(target=upload, args=(image,)) for image in images]
    for thread in (*pollers, *uploaders):
        thread.start()
    try:
        for thread in uploaders:
            thread.join(timeout=120)
        assert upload_codes == [202] * 8, (upload_codes, log.read_text(errors="replace")[-3000:])
        statuses = client.wait_completed(task_ids)
    finally:
        stop.set()
        for thread in pollers:
            thread.join(timeout=60)
    assert statuses == dict.fromkeys(task_ids, "completed"), statuses
    assert not [code for code in client.codes if code >= 500], client.codes
    assert "database is locked" not in log.read_text(errors="replace")

    # SIGKILL the worker: run_local says so, starts another, and the API keeps serving.
    worker = next(p for p in children_of(proc) if "run_worker" in " ".join(p.cmdline())
                  and p.ppid() == proc.pid)
    worker.kill()
    wait_for_log(log, proc, "exited (killed by SIGKILL); restarting it in 1 s", timeout=30)
    assert requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=10).status_code == 200
    wait_for_log(log, proc, "Restarted worker", timeout=30)
    response = client.upload(small_jpegs(9)[-1])
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    assert client.wait_completed([task_id]) == {task_id: "completed"}
    assert not worker.is_running()

    # Ctrl-C while the worker is busy waits for its job; a second Ctrl-C forces the stop.
    # (A new image: one uploaded before would reuse its result and never be "processing".)
    response = client.upload(small_jpegs(10)[-1])
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    deadline = time.monotonic() + 60
    while client.call("GET", f"/api/v1/tasks/{task_id}").json()["status"] != "processing":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    children = children_of(proc)
    os.killpg(proc.pid, signal.SIGINT)
    wait_for_log(log, proc, "Ctrl-C again to force", timeout=10)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert "Forcing stop." in log.read_text(errors="replace")
    assert not any(child.is_running() for child in children)


def test_make_run_exposed_only_when_host_says_so_and_then_warns(run_local, tmp_path):
    # The Makefile passes HOST through, 127.0.0.1 unless told otherwise.
    dry = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "HOST"})
    assert "manage.py run_local --host 127.0.0.1" in dry.stdout, dry.stdout + dry.stderr
    dry = subprocess.run(["make", "-n", "run", "HOST=0.0.0.0"], cwd=ROOT, capture_output=True,
                         text=True)
    assert "manage.py run_local --host 0.0.0.0" in dry.stdout, dry.stdout + dry.stderr

    env = local_env(tmp_path, HOST="0.0.0.0")
    port = int(env["PORT"])
    log = tmp_path / "exposed.log"
    proc = run_local(env, log, "--workers", "0")
    text = wait_for_log(log, proc, "WARNING: QuickBG is listening on 0.0.0.0")
    assert "development server" in text and "demo superuser" in text
    wait_for_health(port)
    assert port_open(port, "127.0.0.2")
    ctrl_c(proc)
    assert not port_open(port)


def test_children_stop_when_make_run_itself_is_killed(run_local, tmp_path):
    """Its children are in their own process groups (Ctrl-C goes through run_local), so a
    SIGKILLed run_local must not leave Redis or the API behind: they get SIGTERM."""
    env = local_env(tmp_path)
    port = int(env["PORT"])
    log = tmp_path / "killed.log"
    proc = run_local(env, log, "--workers", "0")
    banner = wait_for_log(log, proc, "Demo login:")
    redis_port = int(re.search(r"Started redis-server on port (\d+)", banner).group(1))
    wait_for_health(port)
    children = children_of(proc)
    assert "redis-server" in {child.name() for child in children}
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, alive
    assert not port_open(port) and not port_open(redis_port)
