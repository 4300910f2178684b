"""Sign-in lockout (django-axes) wired to QuickBG: client address, backend, lockout answer.

Every ``authenticate()`` call with a request goes through axes: the admin's login form and the
API's ``POST auth/token`` alike. After ``QUICKBG_LOGIN_FAILURE_LIMIT`` failures for one username
from one client address, that pair is refused for ``QUICKBG_LOGIN_COOLOFF_MINUTES`` (429), even
with the right password. Attempts are rows in the database (axes' "Access attempts" in the admin,
where staff can also delete them to unlock early).
"""

from __future__ import annotations

import math

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from axes.helpers import get_cool_off
from django.http import JsonResponse
from django.shortcuts import render
from rest_framework.throttling import BaseThrottle


def client_ip(request) -> str | None:
    """The client's address exactly as the API throttles see it: ``REMOTE_ADDR``, or with
    ``NUM_PROXIES=n`` the n-th address from the end of X-Forwarded-For (what the nearest trusted
    proxy saw). With ``NUM_PROXIES=0`` a client-sent X-Forwarded-For is ignored."""
    return BaseThrottle().get_ident(request) or None


def client_username(request, credentials=None) -> str | None:
    """The username axes records and keys lockouts on: the one sent, cut to its column's 255
    characters (a longer one is refused by the sign-in anyway, and must not be a 500)."""
    if credentials:
        username = credentials.get("username")
    else:
        username = getattr(request, "data", request.POST).get("username")
    return None if username is None else str(username)[:255]


class LockoutBackend(AxesStandaloneBackend):
    """axes' lockout check, for requests only. Code that authenticates without a request (a
    management command, the test client's ``login()``) is not a network sign-in and is not
    counted; every HTTP sign-in path (admin form, DRF, simplejwt) passes its request."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        try:
            return super().authenticate(request, username=username, password=password, **kwargs)
        except AxesBackendPermissionDenied:
            # Flag the Django request (under DRF's own Request, when there is one): axes'
            # middleware then answers with the lockout response instead of a plain 401.
            getattr(request, "_request", request).axes_locked_out = True
            raise


def lockout_response(request, original_response=None, credentials=None):
    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else 0
    message = (
        "Too many failed sign-in attempts for this account from your address. "
        f"Try again in {max(1, math.ceil(seconds / 60))} minutes."
    )
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": message}, status=429)
    else:
        response = render(request, "admin/locked_out.html",
                          {"message": message, "title": "Sign-in locked"}, status=429)
    if seconds:
        response["Retry-After"] = str(seconds)
    return response
