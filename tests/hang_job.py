"""A test-only RQ job that claims its task and then hangs where RQ's timeout cannot reach it:
SIGALRM blocked in the main thread and the thread asleep inside libc, as a job stuck in C code
(a native decoder or inference kernel that never returns) would be. Run by a real worker
subprocess in ``tests/jobs/test_reconcile.py``."""

from __future__ import annotations

import ctypes
import signal

from rq import get_current_job

from removal.services import tasks


def hang_task(task_id: str) -> None:
    job = get_current_job()
    tasks.task_claim(task_id=task_id, job_id=job.id)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    libc = ctypes.CDLL(None, use_errno=True)
    while True:
        libc.sleep(3600)
