"""``/api/v1/auth/``: sign in (token pair), refresh, and sign out (revoke the refresh token).

Every endpoint is throttled per client address (``QUICKBG_AUTH_RATE``); refresh tokens carry the
session's sign-in time (``accounts.tokens``).
"""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework_simplejwt.views import (
    TokenBlacklistView,
    TokenObtainPairView,
    TokenRefreshView,
)

from accounts.throttling import AuthRateThrottle


class ThrottledTokenObtainPairView(TokenObtainPairView):
    throttle_classes = [AuthRateThrottle]


class ThrottledTokenRefreshView(TokenRefreshView):
    throttle_classes = [AuthRateThrottle]


@extend_schema(summary="Sign out: revoke (blacklist) the given refresh token; answers 200 {}")
class LogoutView(TokenBlacklistView):
    """POST ``{"refresh": "..."}``: the refresh token is blacklisted, so it can no longer be
    refreshed; 401 when it is invalid, expired or already revoked."""

    throttle_classes = [AuthRateThrottle]


urlpatterns = [
    path("token", ThrottledTokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("token/refresh", ThrottledTokenRefreshView.as_view(), name="token_refresh"),
    path("logout", LogoutView.as_view(), name="logout"),
]
