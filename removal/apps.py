from django.apps import AppConfig


class RemovalConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "removal"
    verbose_name = "Background removal"
