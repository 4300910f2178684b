from rest_framework.routers import SimpleRouter

from accounts.api import APIKeyViewSet

router = SimpleRouter(trailing_slash=False)
router.register("api-keys", APIKeyViewSet, basename="api-key")

urlpatterns = router.urls
