"""The child processes of `make run` (``run_local``): started, restarted, stopped in order.

- Each child runs in its own process group (so a terminal's Ctrl-C reaches only ``run_local``,
  which then stops them in order) and gets SIGTERM if ``run_local`` itself dies (Linux), so
  nothing is left orphaned.
- ``supervise``: one that exits or is killed is started again after a backoff (1 s, doubling up
  to 30 s, back to 1 s after a minute of running), with a log line saying so; the others keep
  serving. Its ``on_exit`` hook runs first (a worker's Redis registration is removed there).
- ``stop``: the groups in order (workers, then the API, then Redis), each with its signal and
  timeout; a second Ctrl-C kills what is left at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

Say = Callable[..., None]  # say(text, error=False): a line for the operator

BACKOFF_FIRST = 1.0  # seconds before the first restart of a process that exited
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a process that ran this long restarts with the first backoff again
WORKER_STOP_TIMEOUT = 60.0  # a worker finishing its job on Ctrl-C; then it is killed
STOP_TIMEOUT = 15.0  # the API and Redis


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _child_setup(parent_pid: int):
    """In the child before exec: the default SIGINT (a shell's background job inherits it
    ignored), and SIGTERM when this command dies, even by SIGKILL (Linux)."""

    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # not Linux: Ctrl-C and SIGTERM still stop them
            return
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


class Child:
    """A process this command started and keeps running."""

    def __init__(self, name: str, argv: list[str], env: dict, *, quiet: bool = False,
                 on_exit=None):
        self.name = name
        self.argv = argv
        self.env = env
        self.quiet = quiet
        self.on_exit = on_exit  # called after it exited, before it is started again
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.backoff = BACKOFF_FIRST
        self.restart_at: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, env=self.env,
            stdout=subprocess.DEVNULL if self.quiet else None,
            process_group=0,  # not the terminal's foreground group: Ctrl-C comes through us
            preexec_fn=_child_setup(os.getpid()),
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited(self) -> int | None:
        """The exit code of a process that exited and is not yet scheduled to restart."""
        if self.proc is None or self.restart_at is not None:
            return None
        return self.proc.poll()

    def schedule_restart(self, now: float) -> float:
        if now - self.started_at >= STABLE_AFTER:
            self.backoff = BACKOFF_FIRST
        delay = self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        self.restart_at = now + delay
        return delay

    def signal(self, signum: int) -> None:
        if self.running():
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL it if it still runs, reap it, and kill what it left in its group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.kill_leftovers()

    def kill_leftovers(self) -> None:
        """Kill what the exited process left in its process group (RQ's scheduler process)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def supervise(children: list[Child], say: Say) -> None:
    """Restart each child that exits, after its backoff, until interrupted."""
    while True:
        now = time.monotonic()
        for child in children:
            code = child.exited()
            if code is not None:
                child.kill_leftovers()
                delay = child.schedule_restart(now)
                say(f"{child.name} exited ({_exit_reason(code)}); restarting it in "
                          f"{delay:.0f} s", error=True)
                if child.on_exit:
                    try:
                        child.on_exit()
                    except Exception as exc:  # noqa: BLE001 - Redis may be restarting too
                        say(f"Could not clear {child.name}'s registration: {exc}",
                                  error=True)
            elif child.restart_at is not None and now >= child.restart_at:
                child.start()
                say(f"Restarted {child.name} (pid {child.proc.pid})", error=True)
        time.sleep(0.2)

def stop(groups: list[list[Child]], say: Say, *, interrupted: bool) -> None:
    """Workers first, then the API, then Redis; a second Ctrl-C kills what is left."""
    forced = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: forced.set())
    signal.signal(signal.SIGTERM, lambda *_: forced.set())
    if interrupted:
        say("\nStopping QuickBG: workers finish their current job "
                  "(Ctrl-C again to force)...")
    # RQ: SIGTERM is a warm shutdown; runserver exits quietly on SIGINT; Redis saves.
    plan = ((signal.SIGTERM, WORKER_STOP_TIMEOUT), (signal.SIGINT, STOP_TIMEOUT),
            (signal.SIGTERM, STOP_TIMEOUT))
    for group, (signum, timeout) in zip(groups, plan, strict=True):
        for child in group:
            child.restart_at = None
            child.signal(signum)
        deadline = time.monotonic() + timeout
        while (any(child.running() for child in group) and not forced.is_set()
               and time.monotonic() < deadline):
            time.sleep(0.1)
        if forced.is_set():
            say("Forcing stop.", error=True)
            break
        for child in group:
            child.kill()  # only what is still running after its timeout
    for group in groups:
        for child in group:
            child.kill()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

