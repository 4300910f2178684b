"""What the folder runner reports per file."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FileResult:
    """One input's outcome.

    ``status``: ``done`` (its result was written in this run), ``skipped`` (done by an earlier
    run: the manifest has it and the output exists) or ``failed`` (``error`` says why, in the
    server's words). ``uploaded`` is true when this run sent the image (false when it resumed a
    task an earlier run had queued).
    """

    input: str
    output: str | None
    status: str
    task_id: str | None = None
    error: str | None = None
    uploaded: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)
