"""``X-Api-Key`` authentication for DRF: the request is the key's user.

Because the key resolves to a user (``request.user``), everything keyed by user works the same
whichever way the user authenticated: per-user throttles, the unfinished-task cap, owner scoping.
``request.auth`` is the ``UserAPIKey``.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from accounts.services import KeyRefused, api_key_authenticate

HEADER = "X-Api-Key"


class KeyNotAccepted(exceptions.AuthenticationFailed):
    """An ``X-Api-Key`` was sent but cannot be used; ``reason``: unknown, revoked or expired."""

    def __init__(self, detail: str, reason: str):
        super().__init__(detail, code=f"api_key_{reason}")
        self.reason = reason


class APIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        raw = request.headers.get(HEADER)
        if not raw:
            return None
        try:
            key = api_key_authenticate(raw)
        except KeyRefused as exc:
            raise KeyNotAccepted(exc.detail, exc.reason) from None
        return key.user, key

    def authenticate_header(self, request):
        # A 401 (not 403) for a bad key, with a challenge naming the header.
        return "Api-Key"
