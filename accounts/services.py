"""Writes about accounts: revoking a user's API sessions."""

from __future__ import annotations

from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken


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
