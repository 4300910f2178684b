"""Why QuickBG runs a non-forking worker: the cost a forking worker would pay on every job.

RQ's default ``Worker`` forks a fresh work horse per job. An ONNX Runtime session must not be
created before a fork, so a forking worker would have to build the session inside each horse:
this script measures that per-job cost (session creation) next to one inference, in one run.

    .venv/bin/python bench/worker_class.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import models_dir  # noqa: E402 - bench/ is not a package; puts the project on sys.path

from removal import modelstore  # noqa: E402
from removal.pipeline.segment import Segmenter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    path = modelstore.verify(models_dir())
    Segmenter(path, args.threads)  # imports and numba caches warm, not measured
    loads, runs = [], []
    tensor = np.random.default_rng(0).random((1, 3, 1024, 1024), dtype=np.float32)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        segmenter = Segmenter(path, args.threads)
        loads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        segmenter.run(tensor)
        runs.append(time.perf_counter() - t0)
    load, run = statistics.median(loads), statistics.median(runs)
    print(f"session creation (paid per job by a forking worker): {load:.2f} s")
    print(f"one 1024x1024 inference:                             {run:.2f} s")
    print(f"forking worker / warm SimpleWorker, per job:         {(load + run) / run:.2f}x")


if __name__ == "__main__":
    main()
