"""The pipeline's errors: one branch of ``removal.errors``' family, with no Django in either.

- ``InvalidImage``: the input cannot be processed (format, size, corrupt, no subject). Not worth
  retrying; ``str(exc)`` is the message for the user.
- ``FileTooLarge``: an ``InvalidImage`` over the size limit.
- ``InvalidOption``: an output option has a bad value; ``str(exc)`` is ``"field: message"``.
- ``InferenceTimeout``: the model run was stopped because it took longer than it was given.
"""

from __future__ import annotations

from removal.errors import InvalidInput, QuickBGError


class PipelineError(QuickBGError):
    """Raised by the image pipeline."""


class InvalidImage(PipelineError, InvalidInput):
    """The input cannot be processed. ``str(exc)`` is a message for the user."""


class FileTooLarge(InvalidImage):
    """The file is over the upload size limit (remove.bg's ``file_too_large``)."""


class InvalidOption(PipelineError, InvalidInput):
    """An output option has a bad value. ``str(exc)`` names the field: ``"field: message"``."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class InferenceTimeout(PipelineError):
    """The model run was stopped because it took longer than it was given."""
