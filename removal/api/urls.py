from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from removal.api import views

router = SimpleRouter(trailing_slash=False)
router.register("uploads", views.UploadViewSet, basename="upload")
router.register("tasks", views.TaskViewSet, basename="task")
router.register("batches", views.BatchViewSet, basename="batch")

urlpatterns = [
    path("auth/", include("accounts.urls")),
    path("health", views.health, name="health"),
    path("files/<str:token>", views.file_download, name="file-download"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include(router.urls)),
]
