"""The throttle bases every QuickBG throttle builds on, and the sign-in rate.

Here, in the lower app, because ``accounts`` throttles its own endpoints (tokens, refused API
keys) and imports nothing of ``removal``; ``removal.api.throttling`` re-exports them and adds
the upload, health and remove.bg rates.
"""

from __future__ import annotations

import logging

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class SettingsRate:
    """Read the rate from a Django setting at request time (so it can change without a
    restart), and let the request through if the Redis cache is unreachable: the task cap and
    the reconciler still hold, and refusing every request would be worse."""

    rate_setting = ""

    def get_rate(self):
        return getattr(settings, self.rate_setting)

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - cache down: fail open, loudly
            logger.error("%s unavailable (%s); allowing the request", self.scope, exc)
            return True


class AddressRateThrottle(SettingsRate, SimpleRateThrottle):
    """Requests per client address, signed in or not. Behind proxies, ``NUM_PROXIES`` makes DRF
    take the address from X-Forwarded-For."""

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class AuthRateThrottle(AddressRateThrottle):
    """``QUICKBG_AUTH_RATE`` token requests per client address (password guessing)."""

    scope = "auth"
    rate_setting = "QUICKBG_AUTH_RATE"
