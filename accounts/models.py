import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class User(AbstractUser):
    """QuickBG's user. A custom model from the first migration so it can grow without pain."""

    class Meta:
        db_table = "accounts_user"


class UserAPIKey(AbstractAPIKey):
    """A long-lived key that authenticates as its user (``X-Api-Key``).

    djangorestframework-api-key keeps only a SHA-512 hash of the secret (``hashed_key``) and a
    public 8-character ``prefix`` to find the row; its primary key is ``prefix.hash``, which is
    unfit for URLs, so the API names keys by ``public_id``. ``revoked`` is one-way (the library
    refuses to un-revoke); ``expiry_date`` is the API's ``expires_at``.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        indexes = [models.Index(fields=["user", "-created"])]
