"""Writes about accounts: API keys (create, revoke, resolve a presented key to its user) and
revoking a user's JWT sessions.

The secret is generated and hashed by djangorestframework-api-key (a well-kept library: random
prefix + 32-character secret, SHA-512 hash stored, constant-time comparison); the full key is
returned once, by ``api_key_create``, and never stored.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.errors import InvalidInput, NotFound
from accounts.models import UserAPIKey

# ``last_used_at`` is written at most once per this interval per key: a hot key costs no write
# per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class KeyRefused(Exception):
    """A presented key cannot be used; ``reason`` is ``unknown``, ``revoked`` or ``expired``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def api_key_create(*, user, name: str, expires_at=None) -> tuple[UserAPIKey, str]:
    """A new key for ``user``; returns the row and the full key (shown to the user once)."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("name: give the key a name")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at: must be in the future")
    with transaction.atomic():
        return UserAPIKey.objects.create_key(user=user, name=name[:50], expiry_date=expires_at)


def api_key_revoke(*, key: UserAPIKey) -> UserAPIKey:
    """Revoke a key (one-way). Revoking a revoked key is a no-op."""
    UserAPIKey.objects.filter(pk=key.pk, revoked=False).update(revoked=True)
    key.refresh_from_db()
    return key


def api_key_revoke_owned(*, user, public_id) -> None:
    """Revoke one of ``user``'s keys; another user's key, or a revoked one, is ``NotFound``."""
    if not UserAPIKey.objects.filter(user=user, public_id=public_id, revoked=False).update(
            revoked=True):
        raise NotFound("No such API key")


def api_keys_revoke_all(*, user) -> int:
    """Revoke every key of ``user`` (a password change does); returns how many."""
    return UserAPIKey.objects.filter(user=user, revoked=False).update(revoked=True)


def api_key_authenticate(raw: str) -> UserAPIKey:
    """The usable key for a presented secret, with its user loaded; raises ``KeyRefused``."""
    prefix, dot, _ = raw.strip().partition(".")
    key = (
        UserAPIKey.objects.select_related("user").filter(prefix=prefix).first() if dot else None
    )
    if key is None or not key.is_valid(raw.strip()):
        raise KeyRefused("unknown", "Invalid API key")
    if key.revoked:
        raise KeyRefused("revoked", "This API key has been revoked; create a new one")
    if key.has_expired:
        raise KeyRefused("expired", "This API key has expired; create a new one")
    if not key.user.is_active:
        raise KeyRefused("unknown", "Invalid API key")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        UserAPIKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def user_revoke_refresh_tokens(*, user) -> int:
    """Blacklist every unexpired refresh token of ``user`` (every session's current one: each
    rotation records its new token as outstanding). Returns how many were revoked. Access tokens
    already handed out keep working until they expire (``JWT_ACCESS_SECONDS``)."""
    live = OutstandingToken.objects.filter(
        user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    created = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in live], ignore_conflicts=True
    )
    return len(created)
