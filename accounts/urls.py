from django.urls import path
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from removal.api.throttling import AuthRateThrottle


class ThrottledTokenObtainPairView(TokenObtainPairView):
    throttle_classes = [AuthRateThrottle]


class ThrottledTokenRefreshView(TokenRefreshView):
    throttle_classes = [AuthRateThrottle]


urlpatterns = [
    path("token", ThrottledTokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("token/refresh", ThrottledTokenRefreshView.as_view(), name="token_refresh"),
]
