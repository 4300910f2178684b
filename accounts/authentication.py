"""``X-Api-Key`` authentication for DRF: the request is the key's user.

Because the key resolves to a user (``request.user``), everything keyed by user works the same
whichever way the user authenticated: per-user throttles, the unfinished-task cap, owner scoping.
``request.auth`` is the ``UserAPIKey``. That is intended: the upload rate is the account's, so
making more keys never raises it.

Wrong keys are throttled per client address with the password attempts' budget
(``QUICKBG_AUTH_RATE``, ``AuthRateThrottle``): each refused key counts, and past the rate every
``X-Api-Key`` from that address is a 429 with ``Retry-After`` before any key is looked up, so
keys cannot be guessed at request speed.

``SignedIn`` is the permission of what a key may not do: manage API keys, and read or rotate the
webhook signing secret (a key is a credential for removing backgrounds, not for the account).
"""

from __future__ import annotations

from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication

from accounts.services import KeyRefused, api_key_authenticate
from accounts.throttling import AuthRateThrottle

HEADER = "X-Api-Key"


class KeyNotAccepted(exceptions.AuthenticationFailed):
    """An ``X-Api-Key`` was sent but cannot be used; ``reason``: unknown, revoked or expired."""

    def __init__(self, detail: str, reason: str):
        super().__init__(detail, code=f"api_key_{reason}")
        self.reason = reason


class KeyFailureThrottle(AuthRateThrottle):
    """Refused keys per client address, counted like token requests (``QUICKBG_AUTH_RATE``)."""

    scope = "api_key_failures"

    def over_limit(self, request) -> float | None:
        """Seconds to wait when the address used up its refusals, else None (nothing counted)."""
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.get_cache_key(request, None)
        try:
            self.history = self.cache.get(self.key, [])
            self.now = self.timer()
            while self.history and self.history[-1] <= self.now - self.duration:
                self.history.pop()
            return self.wait() if len(self.history) >= self.num_requests else None
        except Exception:  # noqa: BLE001 - cache down: fail open, like every throttle here
            return None

    def count_refusal(self) -> None:
        try:
            self.history.insert(0, self.now)
            self.cache.set(self.key, self.history, self.duration)
        except Exception:  # noqa: BLE001
            pass


class APIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        raw = request.headers.get(HEADER)
        if not raw:
            return None
        throttle = KeyFailureThrottle()
        wait = throttle.over_limit(request)
        if wait is not None:
            raise exceptions.Throttled(wait, detail="Too many invalid API keys from this "
                                                    "address; try again later.")
        try:
            key = api_key_authenticate(raw)
        except KeyRefused as exc:
            throttle.count_refusal()
            raise KeyNotAccepted(exc.detail, exc.reason) from None
        return key.user, key

    def authenticate_header(self, request):
        # A 401 (not 403) for a bad key, with a challenge naming the header.
        return "Api-Key"


class SignedIn(permissions.IsAuthenticated):
    """Signed in with a JWT (or the admin session), not with an API key. The refusal (403)
    says what to do; a view may set ``api_key_message``."""

    message = "This needs a sign-in: send a JWT (POST /api/v1/auth/token), not an API key."

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if isinstance(request.successful_authenticator, APIKeyAuthentication):
            self.message = getattr(view, "api_key_message", self.message)
            return False
        return True
