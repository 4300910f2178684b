"""Helpers the bench scripts share: paths, the bench database, and the API and worker processes.

The scripts in this folder run as files (``.venv/bin/python bench/X.py``), not as a package:
each puts this folder on ``sys.path`` and imports from here with ``from common import ...``.
Importing this module puts the project root on ``sys.path`` as well, so that ``removal``,
``accounts`` and ``quickbg`` import in the scripts. It imports nothing heavy at load time
(psycopg, requests, Redis and RQ are imported where they are used).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"
sys.path.insert(0, str(ROOT))

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/quickbg_bench"
REDIS_URL = "redis://127.0.0.1:6379/0"


def models_dir() -> str:
    """Where the model files are: ``QUICKBG_MODELS_DIR``, or the worker's default cache."""
    return os.environ.get("QUICKBG_MODELS_DIR",
                          str(Path.home() / ".cache" / "quickbg" / "models"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database ``url`` names unless it exists (through ``postgres``)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def service_env(**extra: str) -> dict:
    """The environment of the API and workers a bench starts, with ``extra`` on top.

    ``DATABASE_URL`` (default: the local ``quickbg_bench``, created if missing) and
    ``REDIS_URL`` from the caller's environment, media in a new temporary folder, a queue name of
    this process's own, the upload throttle and unfinished-task cap out of the way, and result
    reuse off.
    """
    database_url = os.environ.get("DATABASE_URL", DATABASE_URL)
    ensure_database(database_url)
    return {**os.environ, "DATABASE_URL": database_url,
            "QUICKBG_MEDIA_ROOT": tempfile.mkdtemp(prefix="quickbg-bench-"),
            "REDIS_URL": os.environ.get("REDIS_URL", REDIS_URL),
            "QUICKBG_QUEUE": f"quickbg-bench-{os.getpid()}", "QUICKBG_UPLOAD_RATE": "100000/min",
            "QUICKBG_MAX_QUEUED_TASKS": "100000", "DJANGO_SETTINGS_MODULE": "quickbg.settings",
            "LOG_LEVEL": "WARNING", "DEBUG": os.environ.get("DEBUG", "true"),
            # The benches time the model: the same photo sent again must run again, not be
            # answered from the stored result.
            "QUICKBG_REUSE_RESULTS": "false", **extra}


def manage(env: dict, *args: str) -> str:
    """``manage.py *args`` in ``env``; its standard output (an error if it fails)."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True).stdout


def create_user(env: dict, username: str, password: str) -> None:
    """A user of the bench database who signs in with ``username`` and ``password``."""
    manage(env, "shell", "-c", "from accounts.models import User; User.objects.create_user("
           f"username='{username}', password='{password}')")


def spawn(args: list[str], env: dict, *, new_session: bool = True) -> subprocess.Popen:
    """``python *args`` in the project root, output discarded (gunicorn, ``manage.py``)."""
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=new_session)


def start_api(env: dict, port: int, *options: str, new_session: bool = True) -> subprocess.Popen:
    """gunicorn serving the API on 127.0.0.1:``port``, with gunicorn's ``options``."""
    return spawn(["-m", "gunicorn", "quickbg.wsgi", "--bind", f"127.0.0.1:{port}", *options], env,
                 new_session=new_session)


def start_worker(env: dict, name: str, *, threads: int | None = None,
                 new_session: bool = True) -> subprocess.Popen:
    """``manage.py run_worker --name name``; ``threads`` sets ``QUICKBG_ORT_THREADS``."""
    if threads is not None:
        env = env | {"QUICKBG_ORT_THREADS": str(threads)}
    return spawn(["manage.py", "run_worker", "--name", name], env, new_session=new_session)


def start_workers(env: dict, count: int, *, threads: int,
                  new_session: bool = True) -> list[subprocess.Popen]:
    """``count`` workers (``threads`` ORT threads each), returned once all of them listen."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    procs = [start_worker(env, f"{name}-{n}", threads=threads, new_session=new_session)
             for n in range(count)]
    try:
        wait_workers(env, name, count)
    except BaseException:
        stop(procs)
        raise
    return procs


def stop(procs: Iterable[subprocess.Popen], timeout: float = 120) -> None:
    """SIGTERM to each process, then wait for each."""
    procs = list(procs)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=timeout)


def wait_http(url: str, *, timeout: float, request_timeout: float, interval: float = 0.5) -> None:
    """Until ``GET url`` answers below 500; each try may take ``request_timeout`` seconds."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=request_timeout).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(interval)
    raise RuntimeError(f"{url} did not come up")


def wait_workers(env: dict, prefix: str, count: int, timeout: float = 180, *,
                 procs: Iterable[subprocess.Popen] = ()) -> None:
    """Until ``count`` workers named ``prefix*`` listen: they load the model before that.

    With ``procs`` (the workers' processes), stops early with an error when one has exited.
    """
    from redis import Redis
    from rq import Worker

    connection = Redis.from_url(env["REDIS_URL"])
    procs = list(procs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [w.name for w in Worker.all(connection=connection)]
        if sum(n.startswith(prefix) for n in names) >= count:
            return
        if any(proc.poll() is not None for proc in procs):
            raise RuntimeError(f"a worker {prefix}-* exited at start-up")
        time.sleep(0.5)
    raise RuntimeError(f"{count} worker(s) {prefix}-* did not start")


def empty_queue(env: dict, name: str) -> None:
    """Drop every job left on the RQ queue ``name``."""
    from redis import Redis
    from rq import Queue

    Queue(name, connection=Redis.from_url(env["REDIS_URL"])).empty()
