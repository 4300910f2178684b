"""The ``quickbg`` client against real workers: is the client ever the bottleneck?

Starts gunicorn (the API) and QuickBG workers as subprocesses against PostgreSQL and Redis
(a queue name of its own, result reuse off), then for one worker (2 ORT threads) and two
workers (1 ORT thread each) on the 2 cores:

1. **the workers' own throughput**: ``--images`` images uploaded all at once (a queue that is
   never empty), images per second from the first task's start to the last one's finish;
2. **the client**: ``quickbg remove DIR -o OUT -j J`` (the real CLI, ``python -m
   quickbg_client``) for J = 1, 2 and 4, images per second over the command's wall time (start
   to exit: listing, hashing, uploads, polling, downloads, writing), and its ratio to (1);
3. **the batches endpoint**: the same number of images as one ``POST /api/v1/batches``, polled
   and downloaded as one zip, over its wall time, and its ratio to (1);
4. **the client's batches**: ``quickbg remove ... -j 4 --batch-size 8`` (small files, 8 to a
   ``POST /api/v1/batches``, one key per group), against ``--batch-size 1`` (one by one) above.

``--accept`` measures only what batching changes, with no workers: how fast the server
*accepts* images (upload to 202, the originals stored, the tasks queued), one by one with 4
concurrent requests against groups of 8 per ``POST /api/v1/batches``, for small (300x200
JPEG, ~20 KB), medium (~0.5 MB) and large (~2 MB) files: the figures behind the client's
``BATCH_SIZE`` and ``BATCH_MAX_BYTES``.

Each round sends images of its own (300x200 JPEG crops of ``../shared/fixtures/*.jpg``, made
distinct per round), so nothing is answered from an earlier round. Each worker's first job is
run before the clock starts.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/quickbg_bench \\
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/client.py --images 12
    ... .venv/bin/python bench/client.py --accept --images 48

Target (issue 25): the client's images/s >= 0.9 x the workers' own throughput. The machine is
shared, so a round's rate also drifts with the load of the moment; each row therefore also
shows a **load-adjusted** ratio: the round's rate over what its workers could do in that very
round (workers / the mean processing time of its own tasks), divided by the same figure of the
workers' own round. Below 1 means the workers waited for the client.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - bench/ is not a package
    FIXTURES,
    ROOT,
    free_port,
    manage,
    service_env,
    start_api,
    start_workers,
    stop,
    wait_http,
)

SENT: set[str] = set()


def crops(count: int, round_no: int) -> list[bytes]:
    """``count`` crops no earlier round sent: the same bytes and options would be the same
    Idempotency-Key, answered at once with the earlier task."""
    sources = [Image.open(p).convert("RGB") for p in sorted(FIXTURES.glob("*.jpg"))]
    out = []
    for n in range(count):
        image = sources[n % len(sources)]
        left = (n * 37 + round_no * 101) % max(1, image.width - 300)
        top = (round_no * 13) % max(1, image.height - 200)
        buffer = io.BytesIO()
        image.crop((left, top, left + 300, top + 200)).save(buffer, "JPEG", quality=85)
        digest = hashlib.sha256(buffer.getvalue()).hexdigest()
        assert digest not in SENT, "a repeated image would be answered from an earlier round"
        SENT.add(digest)
        out.append(buffer.getvalue())
    return out


def when(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Api:
    def __init__(self, base: str, key: str):
        self.http = httpx.Client(base_url=base, headers={"X-Api-Key": key}, timeout=300)

    def upload(self, data: bytes) -> str:
        response = self.http.post("/api/v1/uploads", files={"file": ("image.jpg", data)})
        response.raise_for_status()
        return response.json()["task_id"]

    def wait(self, ids: set[str], poll: float = 1.0) -> list[dict]:
        while True:
            tasks = [t for t in self.http.get("/api/v1/tasks", params={"page_size": 100})
                     .json()["results"] if t["task_id"] in ids]
            if len(tasks) == len(ids) and all(t["status"] in ("completed", "failed")
                                              for t in tasks):
                return tasks
            time.sleep(poll)


def capacity(tasks: list[dict], workers: int) -> float:
    """What the workers could do in this round: workers / mean processing time (images/s).
    The machine is shared, so the rate of one round against another's drifts with the load;
    this round's own processing times do not."""
    timed = [t["processing_time"] for t in tasks if t.get("processing_time")]  # not failed
    return workers * len(timed) / sum(timed)


def workers_own(api: Api, images: list[bytes], workers: int) -> tuple[float, float]:
    ids = {api.upload(data) for data in images}
    tasks = api.wait(ids)
    first = min(when(t["started_at"]) for t in tasks)
    last = max(when(t["finished_at"]) for t in tasks)
    return len(images) / (last - first), capacity(tasks, workers)


def client_run(base: str, key: str, images: list[bytes], jobs: int,
               batch_size: int = 1) -> tuple[float, set[str]]:
    folder = Path(tempfile.mkdtemp(prefix="quickbg-bench-client-"))
    for n, data in enumerate(images):
        (folder / "in" / f"{n % 3}").mkdir(parents=True, exist_ok=True)
        (folder / "in" / f"{n % 3}" / f"img-{n}.jpg").write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "client"), "QUICKBG_URL": base,
           "QUICKBG_API_KEY": key}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "quickbg_client", "remove", str(folder / "in"),
                           "-o", str(folder / "out"), "-j", str(jobs), "--no-progress",
                           "--batch-size", str(batch_size)],
                          env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    # A crop of background alone is (rightly) a failed task: the run is still measured.
    failures = [line for line in done.stderr.splitlines() if line.startswith("  /")]
    if done.returncode != 0 and not (failures and all(
            line.endswith("No foreground found in the image") for line in failures)):
        raise RuntimeError(f"quickbg failed: {done.stderr[-2000:]}")
    written = len(list((folder / "out").rglob("*.png")))
    assert written == len(images) - len(failures), (written, done.stderr)
    manifest = sqlite3.connect(folder / "out" / ".quickbg-manifest.sqlite3")
    ids = {row[0] for row in manifest.execute("SELECT task_id FROM files")}
    return len(images) / elapsed, ids


def batch_run(api: Api, images: list[bytes]) -> tuple[float, set[str]]:
    started = time.monotonic()
    files = [("files", (f"image-{n}.jpg", data)) for n, data in enumerate(images)]
    response = api.http.post("/api/v1/batches", files=files)
    response.raise_for_status()
    batch_id, ids = response.json()["batch_id"], set(response.json()["task_ids"])
    while api.http.get(f"/api/v1/batches/{batch_id}").json()["status"] not in (
            "completed", "partial", "failed"):
        time.sleep(0.5)
    archive = api.http.get(f"/api/v1/batches/{batch_id}/download")
    archive.raise_for_status()
    return len(images) / (time.monotonic() - started), ids


def sized(count: int, round_no: int, target: int) -> list[bytes]:
    """``count`` distinct JPEGs of about ``target`` bytes (noise over a fixture photo; quality
    100 keeps the noise, so the size grows with the pixels)."""
    import numpy as np

    source = Image.open(sorted(FIXTURES.glob("*.jpg"))[0]).convert("RGB")
    rng = np.random.default_rng(round_no)
    side = 300
    out = []
    while len(out) < count:
        image = source.resize((side, side * 2 // 3))
        pixels = np.asarray(image, dtype=np.int16) + rng.integers(-40, 40, (side * 2 // 3, side, 3))
        buffer = io.BytesIO()
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=100)
        if buffer.tell() < target * 0.8 and not out:
            side = int(side * (target / buffer.tell()) ** 0.5) + 1
            continue
        out.append(buffer.getvalue())
    return out


def accept_rates(base: str, key: str, count: int, round_no: int) -> list[tuple]:
    """Images/s accepted (to the 202) one by one (4 at a time) and in batches of 8."""
    from concurrent.futures import ThreadPoolExecutor

    sys.path.insert(0, str(ROOT / "client"))
    from quickbg_client import Client

    rows = []
    with Client(base, key) as client:
        for label, target in (("small", 20_000), ("medium", 500_000), ("large", 2_000_000)):
            for how in ("one by one, 4 at a time", "batches of 8, 2 at a time"):
                round_no += 1
                folder = Path(tempfile.mkdtemp(prefix="quickbg-bench-accept-"))
                paths = []
                for n, data in enumerate(sized(count, round_no, target)):
                    paths.append(folder / f"img-{n}.jpg")
                    paths[-1].write_bytes(data)
                mean = sum(p.stat().st_size for p in paths) / len(paths)
                started = time.monotonic()
                if how.startswith("one"):
                    with ThreadPoolExecutor(4) as pool:
                        list(pool.map(lambda p: client.upload(p), paths))
                else:
                    groups = [paths[i:i + 8] for i in range(0, len(paths), 8)]
                    with ThreadPoolExecutor(2) as pool:
                        list(pool.map(lambda g: client.batch([(p, p.name) for p in g]), groups))
                rate = len(paths) / (time.monotonic() - started)
                rows.append((label, mean, how, rate))
                print(f"  {label} ({mean / 1024:.0f} KB): {how}: {rate:.1f} images/s accepted",
                      flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--workers", default="1,2",
                        help="worker counts to run, comma-separated (1: 2 ORT threads, 2: 1 each)")
    parser.add_argument("--rounds", default="j1,j2,j4,batch,j4b8",
                        help="which rounds: j1 j2 j4 (quickbg -j N one by one), batch (one "
                             "POST batches), j4b8 (quickbg -j 4 --batch-size 8)")
    parser.add_argument("--accept", action="store_true",
                        help="only the acceptance rates (no workers): one by one or batches")
    args = parser.parse_args()
    configs = [(int(n), 2 // int(n)) for n in args.workers.split(",")]

    # The workers' reconciler stays on: on a shared Redis a job can be lost, and a lost task
    # would stall a round for ever instead of 30 s.
    env = service_env()
    manage(env, "migrate", "--noinput")
    name = f"bench-client-{uuid.uuid4().hex[:6]}"
    key = manage(env, "shell", "-c", "from accounts.models import User, UserAPIKey; "
                 f"u = User.objects.create_user(username='{name}', password='x'); "
                 "print(UserAPIKey.objects.create_key(user=u, name='bench')[1])").split()[-1]
    port = free_port()
    web = start_api(env, port, "--workers", "2", "--threads", "8", "--worker-class", "gthread",
                    "--timeout", "300")
    base = f"http://127.0.0.1:{port}"
    rows = []
    round_no = 0
    try:
        wait_http(f"{base}/api/v1/health", timeout=300, request_timeout=30)
        api = Api(base, key)
        if args.accept:
            rows = accept_rates(base, key, args.images, round_no)
            print(f"\n{'files':>16} {'how':>28} {'accepted/s':>11}")
            for label, mean, how, rate in rows:
                print(f"{label:>6} {mean / 1024:>6.0f} KB {how:>28} {rate:>11.1f}")
            return
        for workers, threads in configs:
            procs = start_workers(env, workers, threads=threads)
            try:
                round_no += 1
                api.wait({api.upload(d) for d in crops(workers, round_no)})  # warm-up jobs
                round_no += 1
                own, own_capacity = workers_own(api, crops(args.images, round_no), workers)
                own_busy = own / own_capacity
                print(f"{workers} worker(s) x {threads} thread(s): workers' own "
                      f"{own:.3f} images/s ({own_busy:.2f} of their capacity)", flush=True)
                every = {f"j{jobs}": (f"quickbg -j {jobs}", jobs, 1) for jobs in (1, 2, 4)}
                every["batch"] = ("one batch (POST batches)", None, None)
                every["j4b8"] = ("quickbg -j 4 --batch-size 8", 4, 8)
                rounds = [every[name] for name in args.rounds.split(",")]
                for what, jobs, batch_size in rounds:
                    round_no += 1
                    images = crops(args.images, round_no)
                    if jobs is None:
                        rate, ids = batch_run(api, images)
                    else:
                        rate, ids = client_run(base, key, images, jobs, batch_size)
                    busy = rate / capacity(api.wait(ids), workers)
                    rows.append((workers, threads, what, rate, own, busy / own_busy))
                    print(f"  {what}: {rate:.3f} images/s = {rate / own:.2f} x the workers' own;"
                          f" load-adjusted {busy / own_busy:.2f}", flush=True)
            finally:
                stop(procs)
    finally:
        stop([web])
    print(f"\nimages: {args.images} per round, JPEG crops 300x200 of {FIXTURES}/*.jpg")
    print("ratio: the client's images/s over the workers' own; load-adjusted: the same, each "
          "round measured against its own tasks' processing times (the machine is shared)")
    print(f"{'workers':>8} {'client':>26} {'images/s':>9} {'workers own':>12} {'ratio':>6} "
          f"{'load-adj.':>9}")
    for workers, threads, what, rate, own, adjusted in rows:
        print(f"{workers:>3} x {threads} {what:>26} {rate:>9.3f} {own:>12.3f} {rate / own:>6.2f} "
              f"{adjusted:>9.2f}")


if __name__ == "__main__":
    main()
