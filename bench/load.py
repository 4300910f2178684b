"""Web-tier load: fast clients uploading and polling while slow clients trickle their uploads.

Runs the Procfile's web process (gunicorn) on PostgreSQL and Redis with a QuickBG worker running,
once per server configuration, and prints them side by side:

- the old one: gunicorn's sync workers (2 processes, as the old Dockerfile and compose ran it);
- the chosen one: deploy/gunicorn.conf.py (gthread, WEB_CONCURRENCY=2 x WEB_THREADS=8).

In each run, 5 slow clients each send a JPEG upload body at 64 KB/s (about 35 s each) while 50
fast clients, started over the first few seconds, each upload a 2-5 MB JPEG (the fixtures
re-encoded upscaled at high quality), poll their task once a second, and upload again, until the
slow clients are done. For the fast clients it prints upload and poll p50/p99, errors (any
exception, timeout or unexpected status) and requests/s; for the slow ones their final status.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/quickbg_bench_load \\
    REDIS_URL=redis://127.0.0.1:6379/7 .venv/bin/python bench/load.py

It creates the database if needed, uses its own queue name on the given Redis database, raises
the per-user upload throttle and unfinished-task cap for its one bench user, and keeps files in
a temporary folder it deletes. Targets (issue 17), for the fast clients while the slow ones send:
zero errors, poll p99 < 100 ms, upload p99 < 1 s. The model worker cannot keep up with this
upload rate; that is expected: the bench measures the web tier.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - bench/ is not a package
    FIXTURES,
    create_user,
    empty_queue,
    ensure_database,
    free_port,
    manage,
    spawn,
    start_worker,
    wait_http,
    wait_workers,
)

CONFIGS = {
    "sync x2 (old)": ["gunicorn", "quickbg.wsgi", "--bind", "127.0.0.1:{port}", "--workers", "2",
                      "--timeout", "120"],
    "gthread 2x8 (chosen)": ["gunicorn", "quickbg.wsgi", "--config", "deploy/gunicorn.conf.py"],
}


def make_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """``count`` JPEGs of 2-5 MB: the fixtures upscaled, with film grain, at quality 95."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = sorted(FIXTURES.glob("*.jpg"))
    images = []
    for n in range(count):
        with Image.open(photos[n % len(photos)]) as photo:
            photo = photo.convert("RGB")
            scale = 3000 / max(photo.size) * (1 + 0.1 * (n % 3))
            big = photo.resize((int(photo.width * scale), int(photo.height * scale)),
                               Image.Resampling.LANCZOS)
        pixels = np.asarray(big, dtype=np.int16)
        for sigma in (6, 4, 9, 3, 12):
            grain = rng.normal(0, sigma, pixels.shape).astype(np.int16)
            noisy = Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))
            buffer = io.BytesIO()
            noisy.save(buffer, "JPEG", quality=95)
            if 2_000_000 <= buffer.tell() <= 5_000_000:
                break
        else:
            raise RuntimeError(f"image {n}: could not reach 2-5 MB ({buffer.tell()} bytes)")
        images.append(buffer.getvalue())
    return images


@dataclass
class Stats:
    uploads: list[float] = field(default_factory=list)
    polls: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float | None, error: str | None = None) -> None:
        with self.lock:
            self.requests += 1
            if error:
                self.errors.append(f"{kind}: {error}")
            else:
                (self.uploads if kind == "upload" else self.polls).append(seconds)


def timed(stats: Stats, kind: str, expected: int, call) -> requests.Response | None:
    t0 = time.perf_counter()
    try:
        response = call()
    except requests.RequestException as exc:
        stats.record(kind, None, type(exc).__name__)
        return None
    elapsed = time.perf_counter() - t0
    if response.status_code != expected:
        stats.record(kind, None, f"HTTP {response.status_code}")
        return None
    stats.record(kind, elapsed)
    return response


def fast_client(base: str, token: str, image: bytes, delay: float, polls: int,
                stop: threading.Event, stats: Stats) -> None:
    """Upload, poll the task once a second ``polls`` times, upload again ... until ``stop``."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    if stop.wait(delay):
        return
    while not stop.is_set():
        response = timed(stats, "upload", 202, lambda: session.post(
            f"{base}/api/v1/uploads", files={"file": ("photo.jpg", image, "image/jpeg")},
            timeout=60))
        task_id = response.json()["task_id"] if response is not None else None
        for _ in range(polls):
            if stop.wait(1.0):
                return
            if task_id:
                url = f"{base}/api/v1/tasks/{task_id}"
                timed(stats, "poll", 200, lambda url=url: session.get(url, timeout=60))
        if task_id is None:
            stop.wait(1.0)


def slow_client(port: int, token: str, image: bytes, rate: int, results: list) -> None:
    """One multipart upload whose body goes out at ``rate`` bytes/s; records the status."""
    prepared = requests.Request(
        "POST", f"http://127.0.0.1:{port}/api/v1/uploads",
        files={"file": ("slow.jpg", image, "image/jpeg")},
        headers={"Authorization": f"Bearer {token}"},
    ).prepare()
    head = (f"POST /api/v1/uploads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: {prepared.headers['Content-Type']}"
            f"\r\nContent-Length: {len(prepared.body)}\r\nConnection: close\r\n\r\n").encode()
    chunk = rate // 10
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.sendall(head)
            for offset in range(0, len(prepared.body), chunk):
                sock.sendall(prepared.body[offset:offset + chunk])
                # Pace against the clock: 10 chunks a second.
                time.sleep(max(0.0, started + (offset + chunk) / rate - time.monotonic()))
            answer = sock.recv(64).decode(errors="replace").split("\r\n")[0]
        results.append(f"{answer or 'no answer'} after {time.monotonic() - started:.0f} s")
    except OSError as exc:
        results.append(f"{type(exc).__name__} after {time.monotonic() - started:.0f} s")


def run_config(name: str, argv: list[str], env: dict, login: tuple[str, str],
               images: list[bytes], args) -> tuple[Stats, list[str], float]:
    port = free_port()
    media = tempfile.mkdtemp(prefix="quickbg-load-media-")
    web_env = env | {"PORT": str(port), "HOST": "127.0.0.1", "QUICKBG_MEDIA_ROOT": media,
                     "WEB_CONCURRENCY": "2", "WEB_THREADS": "8"}
    web = spawn(["-m", *[a.format(port=port) for a in argv]], web_env)
    base = f"http://127.0.0.1:{port}"
    stats, slow_results = Stats(), []
    try:
        wait_http(f"{base}/api/v1/health", timeout=60, request_timeout=2, interval=0.3)
        # A token per run (JWT): the sync run can last long enough to expire an earlier one.
        token = requests.post(f"{base}/api/v1/auth/token", timeout=30,
                              json={"username": login[0], "password": login[1]}).json()["access"]
        stop = threading.Event()
        slow = [threading.Thread(target=slow_client,
                                 args=(port, token, images[n], args.slow_rate, slow_results))
                for n in range(args.slow)]
        for thread in slow:
            thread.start()
        time.sleep(1.0)  # the slow uploads are in flight before the fast clients arrive
        rng = random.Random(1)
        fast = [threading.Thread(target=fast_client, args=(
            base, token, images[n % len(images)], rng.uniform(0, args.ramp), args.polls, stop,
            stats)) for n in range(args.clients)]
        started = time.monotonic()
        for thread in fast:
            thread.start()
        for thread in slow:
            thread.join()
        stop.set()
        for thread in fast:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=60)
        shutil.rmtree(media, ignore_errors=True)
    return stats, slow_results, elapsed


def pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.0f} ms" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--slow", type=int, default=5)
    parser.add_argument("--slow-rate", type=int, default=64 * 1024, help="bytes/s")
    parser.add_argument("--ramp", type=float, default=5.0,
                        help="fast clients start spread over this many seconds")
    parser.add_argument("--polls", type=int, default=5, help="polls between two uploads")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated, of: {', '.join(CONFIGS)}")
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL",
                                  "postgres://postgres@127.0.0.1:5432/quickbg_bench_load")
    ensure_database(database_url)
    queue = f"quickbg-load-{os.getpid()}"
    env = {**os.environ, "DATABASE_URL": database_url,
           "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7"),
           "QUICKBG_QUEUE": queue, "DJANGO_SETTINGS_MODULE": "quickbg.settings",
           "DEBUG": "false", "SECRET_KEY": uuid.uuid4().hex, "ALLOWED_HOSTS": "127.0.0.1",
           "QUICKBG_INSECURE_HTTP": "true", "LOG_LEVEL": "WARNING",
           "QUICKBG_UPLOAD_RATE": "100000/min", "QUICKBG_MAX_QUEUED_TASKS": "100000",
           "QUICKBG_AUTH_RATE": "100000/min", "QUICKBG_RECONCILE_INTERVAL": "0",
           # The same photos go up many times: each must run the model, as in service_env.
           "QUICKBG_REUSE_RESULTS": "false"}
    env.pop("PORT", None)
    manage(env, "migrate", "--noinput")
    username, password = f"load-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    create_user(env, username, password)

    print("making 2-5 MB JPEGs ...", flush=True)
    images = make_jpegs(10)
    sizes = sorted(len(i) for i in images)
    print(f"  {len(images)} images, {sizes[0] / 1e6:.1f}-{sizes[-1] / 1e6:.1f} MB; slow clients "
          f"send {args.slow} x {sizes[0] / 1e6:.1f}-{sorted(sizes[:args.slow])[-1] / 1e6:.1f} MB"
          f" at {args.slow_rate // 1024} KB/s", flush=True)
    worker_name = f"load-{uuid.uuid4().hex[:6]}"
    worker = start_worker(env, worker_name, threads=1)
    wait_workers(env, worker_name, 1, procs=[worker])
    rows = []
    try:
        for name in args.configs.split(","):
            print(f"running {name} ...", flush=True)
            stats, slow, elapsed = run_config(name, CONFIGS[name], env, (username, password),
                                              sorted(images, key=len), args)
            rows.append((name, stats, slow, elapsed))
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=120)
        empty_queue(env, queue)

    print(f"\n{args.clients} fast clients (upload, {args.polls} polls 1 s apart, repeat) while "
          f"{args.slow} slow clients send at {args.slow_rate // 1024} KB/s; one worker running")
    header = (f"{'server':<22}{'upload p50':>11}{'upload p99':>12}{'poll p50':>10}"
              f"{'poll p99':>10}{'errors':>8}{'req/s':>8}{'uploads':>9}{'polls':>7}")
    print(header)
    for name, stats, _slow, elapsed in rows:
        print(f"{name:<22}{pct(stats.uploads, 50):>11}{pct(stats.uploads, 99):>12}"
              f"{pct(stats.polls, 50):>10}{pct(stats.polls, 99):>10}{len(stats.errors):>8}"
              f"{stats.requests / elapsed:>8.1f}{len(stats.uploads):>9}{len(stats.polls):>7}")
    for name, stats, slow, _elapsed in rows:
        kinds = sorted({e for e in stats.errors})
        print(f"{name}: slow clients: {'; '.join(slow)}")
        if kinds:
            print(f"{name}: fast-client errors: "
                  + ", ".join(f"{stats.errors.count(k)} x {k}" for k in kinds))
    print("targets while the slow clients send: 0 errors, poll p99 < 100 ms, upload p99 < 1 s")


if __name__ == "__main__":
    main()
