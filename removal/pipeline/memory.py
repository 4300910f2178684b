"""Peak resident memory of this process over a span of work (one task), measured by the kernel.

``ru_maxrss`` (getrusage) is the peak over the whole process lifetime: in a worker that has
already run a 16 MP job, every later 1 MP job would report the 16 MP peak. Linux lets a process
reset its own high-water mark: writing ``5`` to ``/proc/self/clear_refs`` sets ``VmHWM`` back to
the current RSS (Linux >= 4.0). ``PeakMemory`` does that at the start of a task and reads
``VmHWM`` from ``/proc/self/status`` at the end, so the figure is the true peak RSS during that
task (including the model session already resident, which the task needs).

The reset also lowers what ``ru_maxrss`` reports afterwards (both read the same counter).

Where the reset is not possible (not Linux, or /proc not writable) it falls back to the
lifetime ``ru_maxrss`` and says so with ``per_task = False``.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def _vm_hwm_kb() -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _ru_maxrss_kb() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.mb`` (float, MiB) and ``peak.per_task``."""

    def __init__(self):
        self.per_task = False
        self.mb = 0.0

    def __enter__(self) -> PeakMemory:
        try:
            CLEAR_REFS.write_text("5")
            self.per_task = _vm_hwm_kb() is not None
        except OSError:
            self.per_task = False
        return self

    def read(self) -> float:
        kb = _vm_hwm_kb() if self.per_task else None
        self.mb = round((kb if kb is not None else _ru_maxrss_kb()) / 1024, 1)
        return self.mb

    def __exit__(self, *exc) -> None:
        self.read()


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 128 * 1024


def return_large_blocks_to_the_os() -> bool:
    """Make glibc serve every block >= 128 KiB with its own mmap, given back on free.

    By default glibc raises its mmap threshold each time a large block is freed (up to 32 MiB),
    after which ONNX Runtime's activation tensors come from the heap, fragment it, and stay
    resident. ``bench/pipeline.py --no-speed`` measures the effect on a worker-like process (the
    figures are in ``bench/README.md``). Setting the threshold explicitly (what
    ``MALLOC_MMAP_THRESHOLD_=131072`` does) also turns the dynamic adjustment off. Returns
    False where it does not apply.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl): nothing to tune


def release_freed_memory() -> None:
    """After a model session is dropped: collect it now and ask glibc to hand free heap pages
    back (``malloc_trim``), so an evicted model's memory leaves the worker's resident set."""
    import gc

    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
