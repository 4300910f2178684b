"""Upload, health and remove.bg throttles, counted in the Redis cache so every web process shares
them.

The bases (``SettingsRate``, ``AddressRateThrottle``) and the sign-in rate (``AuthRateThrottle``)
are ``accounts``'s, the lower app's (``accounts.throttling``), and re-exported here.
"""

from __future__ import annotations

import logging

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

from accounts.throttling import AddressRateThrottle, AuthRateThrottle, SettingsRate

__all__ = ["AddressRateThrottle", "AuthRateThrottle", "HealthRateThrottle", "MegapixelRateThrottle",
           "SettingsRate", "UploadRateThrottle"]

logger = logging.getLogger(__name__)


class UploadRateThrottle(SettingsRate, UserRateThrottle):
    """``QUICKBG_UPLOAD_RATE`` uploads (and presigned upload URLs) per user, e.g. ``60/min``."""

    scope = "uploads"
    rate_setting = "QUICKBG_UPLOAD_RATE"


class HealthRateThrottle(AddressRateThrottle):
    """``QUICKBG_HEALTH_RATE`` health requests per client address (generous: load balancers
    poll it)."""

    scope = "health"
    rate_setting = "QUICKBG_HEALTH_RATE"


class MegapixelRateThrottle:
    """remove.bg's rate limit: ``QUICKBG_REMOVEBG_RATE`` megapixel-images per user and window
    (``500/min``, remove.bg's own figure), counted in fixed windows in Redis.

    An image costs ``weight`` (``removal.api.removebg.megapixel_weight``: its result's
    megapixels rounded up, at least 1, so a preview costs 1 and a 10 MP full-size result 10).
    The headers say what remove.bg's do: ``X-RateLimit-Limit`` the window's total,
    ``-Remaining`` what is left of it, ``-Reset`` the Unix time the window ends; a refused
    request (429, nothing charged) carries ``Retry-After``, the seconds until then.

    ``allow_request`` only asks whether anything is left (before the image is read); ``take``
    charges the weight once it is known, all at once (Redis ``INCRBY``) so that concurrent
    requests cannot overshoot; a request that takes nothing (a 400) is charged 1. An image
    heavier than the whole limit still passes in an empty window, so it is never refused for
    ever. With Redis down the request is let through, as the other throttles do.
    """

    scope = "removebg"
    rate_setting = "QUICKBG_REMOVEBG_RATE"

    def __init__(self):
        self.taken = 0
        self.used: int | None = None

    def _setup(self, request) -> None:
        import time

        from django.core.cache import cache

        self.cache = cache
        self.limit, self.duration = SimpleRateThrottle.parse_rate(None, getattr(
            settings, self.rate_setting))
        self.now = time.time()
        self.window = int(self.now // self.duration) * self.duration
        self.key = f"throttle_{self.scope}_{request.user.pk}_{self.window}"

    def allow_request(self, request, view) -> bool:
        self._setup(request)
        try:
            self.used = int(self.cache.get(self.key) or 0)
        except Exception as exc:  # noqa: BLE001 - cache down: fail open, loudly
            logger.error("%s throttle unavailable (%s); allowing the request", self.scope, exc)
            return True
        return self.used < self.limit

    def take(self, weight: int, *, force: bool = False) -> bool:
        """Charge ``weight``; ``False`` (nothing charged) when it does not fit the window."""
        if self.taken or not hasattr(self, "key"):
            return True
        try:
            self.cache.add(self.key, 0, timeout=self.duration + 5)
            used = self.cache.incr(self.key, weight)
            if not force and used > self.limit and used - weight > 0:
                self.used = self.cache.decr(self.key, weight)
                return False
        except Exception as exc:  # noqa: BLE001
            logger.error("%s throttle unavailable (%s); allowing the request", self.scope, exc)
            return True
        self.used, self.taken = used, weight
        return True

    def refund(self) -> None:
        """Give back what ``take`` charged (the request was refused later, e.g. with 429 for
        too many unfinished tasks): remove.bg charges a refused request nothing."""
        if not self.taken:
            return
        try:
            self.used = self.cache.decr(self.key, self.taken)
        except Exception as exc:  # noqa: BLE001
            logger.error("%s throttle unavailable (%s)", self.scope, exc)
        self.taken = 0

    def wait(self) -> float:
        return max(1, int(self.window + self.duration - self.now + 0.999))

    def headers(self) -> dict:
        if self.used is None:
            return {}
        return {"X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(max(0, self.limit - self.used)),
                "X-RateLimit-Reset": str(int(self.window + self.duration))}
