"""JWT refresh tokens with an absolute session lifetime.

A sign-in (``POST auth/token``) starts a session: its refresh token carries ``auth_time``, the
moment of sign-in. Refreshing rotates the token (new ``jti``, ``iat`` and ``exp``) but keeps every
other claim, so ``auth_time`` travels unchanged through every rotation. A refresh token whose
``auth_time`` is more than ``QUICKBG_SESSION_MAX_AGE_DAYS`` old is refused (401, with a message
saying to sign in again), whatever its own ``exp``: refreshing can keep a session alive only up
to that limit. The last access token handed out may outlive it by at most its own lifetime
(``JWT_ACCESS_SECONDS``, 5 minutes by default). Tokens without ``auth_time`` (issued before this
rule) are refused the same way: their user signs in once more.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.serializers import (
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
)
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import aware_utcnow, datetime_from_epoch

AUTH_TIME_CLAIM = "auth_time"


def session_max_age() -> timedelta:
    return timedelta(days=settings.QUICKBG_SESSION_MAX_AGE_DAYS)


class SessionRefreshToken(RefreshToken):
    """A refresh token that remembers when its session signed in, and ends with it."""

    def __init__(self, token=None, verify: bool = True) -> None:
        super().__init__(token, verify)
        if token is None:  # a new session (sign-in), not a decoded or rotated token
            self.payload[AUTH_TIME_CLAIM] = int(self.current_time.timestamp())

    def verify(self) -> None:
        self.check_session_age()
        super().verify()

    def check_session_age(self) -> None:
        auth_time = self.payload.get(AUTH_TIME_CLAIM)
        max_age = session_max_age()
        if not isinstance(auth_time, int | float) or (
            aware_utcnow() >= datetime_from_epoch(auth_time) + max_age
        ):
            raise TokenError(
                f"Your session has ended (sessions last at most {max_age.days} days from "
                "sign-in). Please sign in again."
            )


def session_allowed(user) -> bool:
    """Who may sign in or refresh (simplejwt's ``USER_AUTHENTICATION_RULE``): an active user
    who still has a usable password. An admin who switches password sign-in off for a user ends
    their API sessions at the next refresh, like a password change does."""
    return user is not None and user.is_active and user.has_usable_password()


class SessionTokenObtainPairSerializer(TokenObtainPairSerializer):
    token_class = SessionRefreshToken


class SessionTokenRefreshSerializer(TokenRefreshSerializer):
    token_class = SessionRefreshToken
