"""End-to-end throughput: N images through the real API, Redis and RQ workers.

Starts gunicorn (the API) and QuickBG workers as subprocesses against PostgreSQL and Redis,
uploads N images over HTTP, polls until every task is done, and prints images/second for one
worker (2 ORT threads) and two workers (1 thread each) against 1/(a), where (a) is one bare
ONNX Runtime inference of the same model with 2 threads, measured in this run. While tasks run
it also polls ``GET /api/v1/tasks/{id}`` and prints its p50/p99 latency.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/quickbg_bench \\
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/throughput.py --images 12

Target (issue 3): images/second >= 0.9 x 1/(a) on a 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - bench/ is not a package
    FIXTURES,
    create_user,
    free_port,
    manage,
    models_dir,
    service_env,
    start_api,
    start_workers,
    stop,
    wait_http,
)


def bare_inference_seconds(repeats: int = 5) -> float:
    from removal import modelstore
    from removal.pipeline.segment import Segmenter

    segmenter = Segmenter(modelstore.verify(models_dir()), 2)
    tensor = np.random.default_rng(0).random((1, 3, 1024, 1024), dtype=np.float32)
    segmenter.run(tensor)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        segmenter.run(tensor)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def upload(base: str, headers: dict, data: bytes) -> str:
    response = requests.post(f"{base}/api/v1/uploads", headers=headers,
                             files={"file": ("image.jpg", data)}, timeout=60)
    response.raise_for_status()
    return response.json()["task_id"]


def finish(base: str, headers: dict, ids: list[str], latencies: list[float]) -> None:
    """Poll every task once a second until all are completed; time each GET."""
    pending = set(ids)
    while pending:
        for task_id in list(pending):
            t0 = time.perf_counter()
            body = requests.get(f"{base}/api/v1/tasks/{task_id}", headers=headers,
                                timeout=30).json()
            latencies.append(time.perf_counter() - t0)
            if body["status"] in ("completed", "failed"):
                if body["status"] == "failed":
                    raise RuntimeError(f"task failed: {body['error_message']}")
                pending.discard(task_id)
        time.sleep(1.0)  # a polling client, not a load generator: keep the CPU for workers


def run_round(env: dict, base: str, token: str, images: list[bytes], workers: int,
              threads: int) -> tuple[float, list[float]]:
    procs = start_workers(env, workers, threads=threads, new_session=False)
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    try:
        # Steady state, as a long-running service sees it: each worker's first job (ORT faults
        # its memory arena in) runs before the clock starts.
        finish(base, headers, [upload(base, headers, data) for data in images[:workers]], [])
        started = time.monotonic()
        ids = [upload(base, headers, data) for data in images]
        finish(base, headers, ids, latencies)
        elapsed = time.monotonic() - started
    finally:
        stop(procs)
    return len(images) / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    args = parser.parse_args()

    env = service_env()
    manage(env, "migrate", "--noinput")
    password = uuid.uuid4().hex
    username = f"bench-{uuid.uuid4().hex[:6]}"
    create_user(env, username, password)

    a = bare_inference_seconds()
    port = free_port()
    web = start_api(env, port, "--workers", "2", new_session=False)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/v1/health", timeout=120, request_timeout=2, interval=0.3)
        token = requests.post(f"{base}/api/v1/auth/token",
                              json={"username": username, "password": password},
                              timeout=10).json()["access"]
        photos = sorted(FIXTURES.glob("*.jpg"))
        images = [photos[n % len(photos)].read_bytes() for n in range(args.images)]
        rounds = [(workers, threads, *run_round(env, base, token, images, workers, threads))
                  for workers, threads in ((1, 2), (2, 1))]
    finally:
        stop([web], timeout=30)
    # (a) before and after the rounds; the faster one is the stricter yardstick.
    a = min(a, bare_inference_seconds())
    print(f"(a) bare ORT inference, 2 threads (faster of a run before and one after the rounds):"
          f" {a:.2f} s  ->  1/(a) = {1 / a:.3f} images/s")
    for workers, threads, rate, latencies in rounds:
        p50 = statistics.median(latencies) * 1000
        p99 = float(np.percentile(latencies, 99)) * 1000
        print(f"{workers} worker(s) x {threads} thread(s): {rate:.3f} images/s = "
              f"{rate * a:.2f} x 1/(a)   GET /tasks/{{id}} p50 {p50:.0f} ms, p99 {p99:.0f} ms")


if __name__ == "__main__":
    main()
