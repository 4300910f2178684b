"""Batches: fairness (a single upload behind another user's batch) and batch throughput.

Starts gunicorn (the API) and 2 QuickBG workers (1 ORT thread each) as subprocesses against
PostgreSQL and Redis, with a queue name of its own, and prints:

1. **fairness**: the wait (task ``created_at`` → ``started_at``, from the API) of a single
   upload on an empty queue, and of a single upload sent while another user's N-image batch is
   queued and running - median of ``--singles`` uploads each;
2. **throughput**: N images as one batch against the same N images uploaded one by one (each
   round on fresh workers, each worker's first job run before the clock starts, completion
   polled with one request every 2 s so the client steals little CPU from the workers).

Images: ``--images`` (default 100) 300x200 JPEG crops of ``../shared/fixtures/*.jpg`` - small,
so uploading and decoding cost little; the model still runs at 1024x1024, which is what a job
costs.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/quickbg_bench \\
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/batch.py --images 100

Targets (issue 13): the single upload's wait behind the batch is within one job's time; the
batch's throughput is >= 0.9 x the one-by-one throughput.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - bench/ is not a package
    FIXTURES,
    create_user,
    empty_queue,
    free_port,
    manage,
    service_env,
    start_api,
    start_workers,
    stop,
    wait_http,
)

POLL = 2.0


def crops(count: int) -> list[bytes]:
    sources = [Image.open(p).convert("RGB") for p in sorted(FIXTURES.glob("*.jpg"))]
    out = []
    for n in range(count):
        image = sources[n % len(sources)]
        left = (n * 37) % max(1, image.width - 300)
        buffer = io.BytesIO()
        image.crop((left, 0, left + 300, 200)).save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def when(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Client:
    """One user's API client; signs in again when the 5-minute access token has expired."""

    def __init__(self, base: str, username: str, password: str):
        self.base = base
        self.credentials = {"username": username, "password": password}
        self.headers = {}
        self.sign_in()

    def sign_in(self) -> None:
        token = requests.post(f"{self.base}/api/v1/auth/token", json=self.credentials,
                              timeout=60).json()["access"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, url: str, **kwargs) -> requests.Response:
        url = url if url.startswith("http") else f"{self.base}{url}"
        kwargs.setdefault("timeout", 60)
        response = requests.request(method, url, headers=self.headers, **kwargs)
        if response.status_code == 401:
            self.sign_in()
            response = requests.request(method, url, headers=self.headers, **kwargs)
        response.raise_for_status()
        return response

    def get(self, url: str) -> dict:
        return self.call("GET", url).json()

    def upload(self, data: bytes) -> str:
        return self.call("POST", "/api/v1/uploads",
                         files={"file": ("image.jpg", data)}).json()["task_id"]

    def batch(self, images: list[bytes]) -> dict:
        files = [("files", (f"image-{n}.jpg", data)) for n, data in enumerate(images)]
        return self.call("POST", "/api/v1/batches", files=files, timeout=300).json()

    def task(self, task_id: str) -> dict:
        return self.get(f"/api/v1/tasks/{task_id}")

    def wait_task(self, task_id: str, poll: float = 0.25) -> dict:
        while True:
            body = self.task(task_id)
            if body["status"] in ("completed", "failed"):
                return body
            time.sleep(poll)

    def wait_batch(self, batch_id: str) -> dict:
        while True:
            body = self.get(f"/api/v1/batches/{batch_id}?page_size=1")
            if body["status"] in ("completed", "partial", "failed"):
                return body
            time.sleep(POLL)

    def tasks(self, ids: set[str]) -> list[dict]:
        """The given tasks, read from the task list (100 per request)."""
        found, url = [], f"{self.base}/api/v1/tasks?page_size=100"
        while url and len(found) < len(ids):
            page = self.get(url)
            found += [t for t in page["results"] if t["task_id"] in ids]
            url = page["next"]
        return found


def wait_of(body: dict) -> float:
    return when(body["started_at"]) - when(body["created_at"])


def fairness(env, alice: Client, bob: Client, images, singles: int) -> tuple:
    procs = start_workers(env, 2, threads=1)
    try:
        for data in images[:2]:  # each worker's first job (arena warm-up)
            alice.wait_task(alice.upload(data))
        empty = [wait_of(alice.wait_task(alice.upload(images[n]))) for n in range(singles)]
        batch = bob.batch(images)
        while True:  # both workers busy on the batch
            body = bob.get(f"/api/v1/batches/{batch['batch_id']}")
            if body["counts"]["processing"] >= 2 or body["counts"]["completed"]:
                break
            time.sleep(0.2)
        behind, jobs = [], []
        for n in range(singles):
            body = alice.wait_task(alice.upload(images[n]))
            behind.append(wait_of(body))
            jobs.append(body["processing_time"])
        left = bob.get(f"/api/v1/batches/{batch['batch_id']}")["counts"]["queued"]
    finally:
        stop(procs)
    return empty, behind, statistics.median(jobs), left


def throughput_batch(env, client: Client, images) -> float:
    procs = start_workers(env, 2, threads=1)
    try:
        for data in images[:2]:
            client.wait_task(client.upload(data))
        started = time.time()
        batch = client.batch(images)
        client.wait_batch(batch["batch_id"])
        done = client.tasks(set(batch["task_ids"]))
    finally:
        stop(procs)
    return len(images) / (max(when(t["finished_at"]) for t in done) - started)


def throughput_single(env, client: Client, images) -> float:
    procs = start_workers(env, 2, threads=1)
    try:
        for data in images[:2]:
            client.wait_task(client.upload(data))
        started = time.time()
        ids = {client.upload(data) for data in images}
        while True:
            time.sleep(POLL)
            done = client.tasks(ids)
            if len(done) == len(ids) and all(t["status"] in ("completed", "failed") for t in done):
                break
    finally:
        stop(procs)
    return len(images) / (max(when(t["finished_at"]) for t in done) - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--singles", type=int, default=3)
    args = parser.parse_args()

    env = service_env(QUICKBG_RECONCILE_INTERVAL="0")
    manage(env, "migrate", "--noinput")
    users = {}
    for who in ("alice", "bob", "carol"):
        users[who] = (f"bench-{who}-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex)
        create_user(env, *users[who])
    images = crops(args.images)
    port = free_port()
    web = start_api(env, port, "--workers", "2", "--timeout", "300")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/v1/health", timeout=300, request_timeout=30)  # a loaded machine
        alice, bob, carol = (Client(base, *users[w]) for w in ("alice", "bob", "carol"))
        empty, behind, job, left = fairness(env, alice, bob, images, args.singles)
        print(f"fairness: single upload wait on an empty queue: median "
              f"{statistics.median(empty):.2f} s  {[round(w, 2) for w in empty]}")
        print(f"fairness: single upload wait behind another user's {args.images}-image batch: "
              f"median {statistics.median(behind):.2f} s  {[round(w, 2) for w in behind]}  (one "
              f"job: {job:.2f} s; batch members still queued afterwards: {left})", flush=True)
        # The rest of the fairness batch leaves the queue (its rows stay queued in this bench
        # database; the reconciler is off) so the throughput rounds start from empty queues.
        empty_queue(env, f"{env['QUICKBG_QUEUE']}-batch")
        single_rate = throughput_single(env, carol, images)
        print(f"throughput: one by one {single_rate:.3f} images/s", flush=True)
        batch_rate = throughput_batch(env, carol, images)
    finally:
        stop([web])
    print(f"images: {args.images} JPEG crops 300x200 of {FIXTURES}/*.jpg; 2 workers x 1 ORT "
          "thread")
    print(f"throughput: one by one {single_rate:.3f} images/s; one batch {batch_rate:.3f} "
          f"images/s = {batch_rate / single_rate:.2f} x one by one")


if __name__ == "__main__":
    main()
