"""Resident memory of a real worker process (``manage.py run_worker``), to size its pod.

Starts gunicorn as the web Deployment runs it (deploy/gunicorn.conf.py, 2 processes x 8
threads) and one ``manage.py run_worker`` exactly as the worker Deployment runs it
(``--max-jobs 500``, QUICKBG_ORT_THREADS=2), against PostgreSQL and Redis, and sends it the
largest images the default limits accept: a 4096x4096 JPEG (QUICKBG_MAX_DIMENSION), a
12 MP photo, a ~1 MP fixture, then the 4096x4096 one again. While it runs, a thread samples
the worker's process tree (the worker and RQ's scheduler child, which a container's memory
limit counts together) every 50 ms: *charged*, the worker's RSS plus the children's USS (their
private pages; what they share with the worker after the fork is counted once, as the
container's memory cgroup counts it), and the plain RSS sum (shared pages counted twice, an
upper bound). It prints the idle figure after the model is loaded, the peak while jobs run,
the figure between jobs afterwards, and the worker's own kernel peak (``VmHWM``), in MiB; and
the web pod's figure (gunicorn's arbiter RSS plus its workers' USS) after it served the run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/quickbg_bench \\
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/worker_rss.py

The Kubernetes worker's memory request and limit (deploy/kubernetes/worker.yaml) are sized from
the peak this prints (README, "Kubernetes").
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - bench/ is not a package
    FIXTURES,
    free_port,
    manage,
    service_env,
    spawn,
    start_api,
    stop,
    wait_http,
    wait_workers,
)

MIB = 2**20


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def big_photo(width: int, height: int) -> bytes:
    """A fixture photo scaled up, with noise so the JPEG is as large as a real photo's."""
    image = Image.open(FIXTURES / "girl-1.jpg").convert("RGB").resize((width, height))
    rng = np.random.default_rng(1)
    noisy = np.clip(np.asarray(image, dtype=np.int16) + rng.integers(-8, 8, (height, width, 3)),
                    0, 255).astype(np.uint8)
    return jpeg(Image.fromarray(noisy))


class TreeSampler(threading.Thread):
    """Samples RSS and PSS of a process and its children until stopped."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []  # (time, charged MiB, rss MiB)
        self._halt = threading.Event()

    def sample(self) -> tuple[float, float]:
        """(charged, RSS sum) in MiB: charged = the worker's RSS + its children's USS."""
        charged = rss = self.root.memory_info().rss
        for proc in self.root.children(recursive=True):
            try:
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            charged += info.uss
            rss += info.rss
        return charged / MIB, rss / MIB

    def run(self) -> None:
        while not self._halt.is_set():
            charged, rss = self.sample()
            self.samples.append((time.monotonic(), charged, rss))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def peak(self, since: float, until: float) -> tuple[float, float]:
        window = [(charged, rss) for t, charged, rss in self.samples if since <= t <= until]
        return max(c for c, _ in window), max(r for _, r in window)


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def run_task(base: str, headers: dict, data: bytes) -> dict:
    response = requests.post(f"{base}/api/v1/uploads", headers=headers,
                             files={"file": ("image.jpg", data)}, timeout=120)
    response.raise_for_status()
    task_id = response.json()["task_id"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        task = requests.get(f"{base}/api/v1/tasks/{task_id}", headers=headers, timeout=30).json()
        if task["status"] in ("completed", "failed"):
            return task
        time.sleep(0.5)
    raise RuntimeError(f"task {task_id} did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="QUICKBG_ORT_THREADS (2)")
    args = parser.parse_args()

    env = service_env(QUICKBG_ORT_THREADS=str(args.threads), QUICKBG_MAX_UPLOAD_MB="40",
                      WEB_CONCURRENCY="2", WEB_THREADS="8")
    manage(env, "migrate", "--noinput")
    key = manage(env, "shell", "-c",
                 "from accounts.models import User, UserAPIKey; "
                 f"u = User.objects.create_user(username='bench-{uuid.uuid4().hex[:6]}'); "
                 "print(UserAPIKey.objects.create_key(user=u, name='bench')[1])").split()[-1]
    inputs = [("4096x4096 JPEG", big_photo(4096, 4096)), ("12 MP JPEG", big_photo(4000, 3000)),
              ("1 MP fixture", (FIXTURES / "cloth-1.jpg").read_bytes())]
    inputs.append(("4096x4096 JPEG again", inputs[0][1]))

    port = free_port()
    web = start_api(env, port, "--config", "deploy/gunicorn.conf.py")
    name = f"bench-rss-{uuid.uuid4().hex[:6]}"
    # The Deployment's command (deploy/kubernetes/worker.yaml), plus a name to wait for.
    worker = spawn(["manage.py", "run_worker", "--max-jobs", "500", "--name", name], env)
    base = f"http://127.0.0.1:{port}"
    headers = {"X-Api-Key": key}
    sampler = None
    try:
        wait_http(f"{base}/api/v1/health", timeout=180, request_timeout=10)
        wait_workers(env, name, 1, procs=[worker])
        sampler = TreeSampler(worker.pid)
        sampler.start()
        time.sleep(3)
        idle_charged, idle_rss = sampler.sample()
        jobs_started = time.monotonic()
        rows = []
        for label, data in inputs:
            t0 = time.monotonic()
            task = run_task(base, headers, data)
            charged, rss = sampler.peak(t0, time.monotonic())
            rows.append((label, len(data), task["status"], charged, rss))
        jobs_ended = time.monotonic()
        time.sleep(3)
        after_charged, after_rss = sampler.sample()
        peak_charged, peak_rss = sampler.peak(jobs_started, jobs_ended)
        hwm = vm_hwm_mib(worker.pid)
        web_charged, web_rss = TreeSampler(web.pid).sample()
    finally:
        if sampler is not None:
            sampler.stop()
        stop([worker, web])

    print(f"worker process tree (run_worker + RQ scheduler), QUICKBG_ORT_THREADS={args.threads}")
    print(f"{'input':24} {'bytes':>10} {'status':>10} {'peak charged MiB':>17} "
          f"{'peak RSS sum MiB':>17}")
    for label, size, status, charged, rss in rows:
        print(f"{label:24} {size:>10} {status:>10} {charged:>17.0f} {rss:>17.0f}")
    print(f"idle, model loaded: charged {idle_charged:.0f} MiB, RSS sum {idle_rss:.0f} MiB")
    print(f"peak during jobs:   charged {peak_charged:.0f} MiB, RSS sum {peak_rss:.0f} MiB")
    print(f"between jobs after: charged {after_charged:.0f} MiB, RSS sum {after_rss:.0f} MiB")
    print(f"worker VmHWM (kernel peak of the main process): {hwm:.0f} MiB")
    print(f"web (gunicorn 2 x 8) after the run: charged {web_charged:.0f} MiB, "
          f"RSS sum {web_rss:.0f} MiB")
    print(json.dumps({"idle_charged_mib": round(idle_charged), "peak_charged_mib":
                      round(peak_charged), "peak_rss_sum_mib": round(peak_rss),
                      "after_charged_mib": round(after_charged), "vm_hwm_mib": round(hwm),
                      "web_charged_mib": round(web_charged)}))


if __name__ == "__main__":
    main()
