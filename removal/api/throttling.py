"""Per-user upload throttle, counted in the Redis cache so every web process shares it."""

from __future__ import annotations

import logging

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)


class UploadRateThrottle(UserRateThrottle):
    """``QUICKBG_UPLOAD_RATE`` uploads per user (e.g. ``60/min``). Read at request time so the
    setting can change without a restart. If Redis is unreachable the upload is let through
    (the task cap and the reconciler still hold); refusing every upload would be worse."""

    scope = "uploads"

    def get_rate(self):
        return settings.QUICKBG_UPLOAD_RATE

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - cache down: fail open, loudly
            logger.error("upload throttle unavailable (%s); allowing the request", exc)
            return True


class AuthRateThrottle(SimpleRateThrottle):
    """``QUICKBG_AUTH_RATE`` token requests per client address (password guessing). Behind
    proxies, ``NUM_PROXIES`` makes DRF take the address from X-Forwarded-For."""

    scope = "auth"

    def get_rate(self):
        return settings.QUICKBG_AUTH_RATE

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - cache down: fail open, loudly
            logger.error("auth throttle unavailable (%s); allowing the request", exc)
            return True
