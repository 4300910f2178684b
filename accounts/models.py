from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """QuickBG's user. A custom model from the first migration so it can grow without pain."""

    class Meta:
        db_table = "accounts_user"
