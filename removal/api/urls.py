from django.urls import include, path, re_path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)
from rest_framework.routers import SimpleRouter

from removal.api import options, views
from removal.api.health import health_view

router = SimpleRouter(trailing_slash=False)
router.register("uploads", views.UploadViewSet, basename="upload")
router.register("tasks", views.TaskViewSet, basename="task")
router.register("webhooks", views.WebhookViewSet, basename="webhook")
router.register("batches", views.BatchViewSet, basename="batch")

urlpatterns = [
    path("auth/", include("accounts.urls")),
    path("health", health_view, name="health"),
    path("account", views.account, name="account"),
    path("models", views.models, name="models"),
    path("options", options.options, name="options"),
    path("files/<str:token>", views.file_download, name="file-download"),
    # Any other link under files/ (cut short, extra slashes) gets the same JSON 404.
    re_path(r"^files/(?P<token>.*)$", views.file_download),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    # Split view: Swagger UI's start-up script is a separate request, not an inline script.
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("", include(router.urls)),
]
