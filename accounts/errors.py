"""The root of QuickBG's one error family, and the two errors ``accounts`` raises. Plain
Python: no Django, no HTTP status codes.

They live here, in the lower app, because ``accounts`` imports nothing of ``removal``;
``removal.errors`` re-exports all three and adds the rest of the family, so
``removal.api.errors`` maps them like any other.
"""

from __future__ import annotations


class QuickBGError(Exception):
    """Something the caller can act on; ``detail`` says what."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class InvalidInput(QuickBGError):
    """The request cannot be processed as sent (bad image, bad option, bad key)."""


class NotFound(QuickBGError):
    """The object does not exist, or belongs to someone else (indistinguishable on purpose)."""
