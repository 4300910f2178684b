from django.contrib import admin
from django.urls import include, path

from removal.monitoring import metrics_view

urlpatterns = [
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("removal.api.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("", include("removal.web")),
]
