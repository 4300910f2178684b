"""QuickBG's one error family. Plain Python: no Django, no HTTP status codes.

Services, selectors and the pipeline raise these; ``removal.api.errors`` alone decides which HTTP
answer each one gets, and ``removal.jobs`` alone decides what a failure means for a task. The
message (``detail``) is written for the user: it says what was wrong and what to do.

The root (``QuickBGError``) and the two errors ``accounts`` raises (``InvalidInput``,
``NotFound``) are defined in ``accounts.errors``, the lower app, and re-exported here.
"""

from __future__ import annotations

from accounts.errors import InvalidInput, NotFound, QuickBGError

__all__ = ["Conflict", "Gone", "InvalidInput", "ModelUnavailable", "NotFound", "OutOfCredits",
           "QuickBGError", "TaskGone", "TimedOut", "TooManyTasks"]


class Conflict(QuickBGError):
    """The object is not in a state that allows this action (e.g. retrying a completed task)."""


class OutOfCredits(QuickBGError):
    """The caller's monthly credits (``QUICKBG_MONTHLY_CREDITS``) are used up."""


class TimedOut(QuickBGError):
    """A synchronous request's task did not finish in time; ``task_id`` can still be polled."""

    def __init__(self, detail: str, task_id: str):
        super().__init__(detail)
        self.task_id = task_id


class TooManyTasks(QuickBGError):
    """The caller has too many unfinished tasks; ``retry_after`` seconds is a fair wait."""

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.retry_after = retry_after


class Gone(QuickBGError):
    """The object's stored data was deleted on purpose (retention); the row remains."""


class TaskGone(QuickBGError):
    """The task was deleted (its upload or its owner's account) while a worker was running it."""


class ModelUnavailable(QuickBGError):
    """The model is known but cannot run now: no live worker serves it, or its weights are
    missing on the worker. ``detail`` names the command that fixes it."""
