from django.contrib import admin
from django.urls import include, path

from removal.api.health import metrics_view
from removal.api.removebg import AccountView, RemoveBgView

urlpatterns = [
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("accounts.api_urls")),
    path("api/v1/", include("removal.api.urls")),
    path("metrics", metrics_view, name="metrics"),
    # remove.bg's API at the site root, so a remove.bg client only changes its base URL.
    path("v1.0/removebg", RemoveBgView.as_view(), name="removebg"),
    path("v1.0/account", AccountView.as_view(), name="removebg-account"),
    path("", include("removal.web")),
]
