"""The client's errors. Every message is the server's own ``detail`` where there is one."""

from __future__ import annotations


class QuickBGError(Exception):
    """Base of every error this package raises."""


class ConfigError(QuickBGError):
    """No URL or API key, or a config file that cannot be read (CLI exit status 2)."""


class APIError(QuickBGError):
    """The server answered with an error status (after any retries)."""

    def __init__(self, status: int, detail: str, body: object = None):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body

    @property
    def option_error(self) -> bool:
        """A 400 naming an output option: every file would fail the same way."""
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        from quickbg_client.options import OPTION_NAMES

        return self.status == 400 and isinstance(errors, dict) and bool(
            set(errors) & (set(OPTION_NAMES) | {"model"}))


class AuthError(APIError):
    """401/403: a missing, unknown, revoked or expired API key (CLI exit status 2)."""


class CreditsExhausted(APIError):
    """402: this month's credits are used up; no further file can succeed."""


class TaskFailed(QuickBGError):
    """The server accepted the image but its task failed; ``message`` is the task's error."""

    def __init__(self, task_id: str, message: str):
        super().__init__(message)
        self.task_id = task_id
        self.message = message


def from_response(response) -> APIError:
    """The error for an error response: its ``detail`` (QuickBG) or ``errors`` (remove.bg)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = None
    if isinstance(body, dict):
        detail = body.get("detail")
        if detail is None and isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            detail = first.get("detail") or first.get("title")
    if not detail:
        detail = (response.text or response.reason_phrase or "error").strip()[:300]
    kind = {401: AuthError, 403: AuthError, 402: CreditsExhausted}.get(response.status_code,
                                                                        APIError)
    return kind(response.status_code, str(detail), body)
