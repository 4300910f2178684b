"""Typed readers for environment variables.

Each helper returns a safe default when the variable is unset and raises
``ImproperlyConfigured`` naming the variable when it is set to something unusable, so a bad
deployment stops at start-up instead of failing on the first request.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be <= {maximum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: list[str] | tuple[str, ...]) -> str:
    """One of ``choices`` (compared case-insensitively; returned as spelled in ``choices``)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    by_folded = {choice.casefold(): choice for choice in choices}
    value = by_folded.get(raw.strip().casefold())
    if value is None:
        raise ImproperlyConfigured(
            f"{name} must be one of {', '.join(choices)}; got {raw!r}"
        )
    return value


# DRF reads only the first letter of the period ("5/month" would be 5 a minute), so the units
# are spelled out here and anything else is refused.
RATE_UNITS = ("s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day")
_RATE_SPELLINGS = set(RATE_UNITS) | {unit + "s" for unit in RATE_UNITS if len(unit) > 1}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$", re.IGNORECASE)


def check_rate(name: str, raw: str) -> str:
    """A DRF throttle rate, ``<count>/<period>``, e.g. ``60/min``; returned normalised."""
    match = _RATE.match(raw)
    if not match or match.group(2).lower() not in _RATE_SPELLINGS:
        raise ImproperlyConfigured(
            f"{name} must be a rate like 60/min: <count>/<period>, the period one of "
            f"{', '.join(RATE_UNITS)}; got {raw!r}"
        )
    count, unit = int(match.group(1)), match.group(2).lower()
    if count < 1:
        raise ImproperlyConfigured(f"{name} must allow at least 1 request, got {raw!r}")
    return f"{count}/{unit}"


def env_rate(name: str, default: str) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return check_rate(name, raw)


def check_url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    """A URL with one of ``schemes`` and a host (``unix://`` needs a path instead)."""
    try:
        parts = urlsplit(raw.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid URL ({exc}): {raw!r}") from None
    if parts.scheme.lower() not in schemes or not (parts.hostname or parts.path):
        raise ImproperlyConfigured(
            f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}; "
            f"got {raw!r}"
        )
    if parts.scheme.lower() != "unix" and not parts.hostname:
        raise ImproperlyConfigured(f"{name} must name a host, got {raw!r}")
    return raw.strip()


def env_url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return check_url(name, raw, schemes)


def env_seconds_list(name: str, default: list[float]) -> list[float]:
    """Comma-separated seconds, e.g. ``10,60,300``."""
    try:
        values = [float(item) for item in env_list(name, [str(value) for value in default])]
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be comma-separated seconds, e.g. 10,60,300"
        ) from None
    if any(value < 0 for value in values):
        raise ImproperlyConfigured(f"{name} must not hold a negative delay")
    return values


LOCKOUT_KEYS = ("username", "ip_address")


def env_lockout_by(name: str, default: list[str]) -> list[str | list[str]]:
    """django-axes' ``AXES_LOCKOUT_PARAMETERS`` from ``username``, ``ip_address`` and
    ``username+ip_address`` (a pair), comma-separated."""
    parameters: list[str | list[str]] = []
    for item in env_list(name, default):
        keys = [key.strip() for key in item.split("+")]
        if not set(keys) <= set(LOCKOUT_KEYS):
            raise ImproperlyConfigured(
                f"{name} must list username, ip_address or username+ip_address, got {item!r}"
            )
        parameters.append(keys if len(keys) > 1 else keys[0])
    if not parameters:
        raise ImproperlyConfigured(f"{name} must not be empty")
    return parameters
