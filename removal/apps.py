from django.apps import AppConfig


class RemovalConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "removal"
    verbose_name = "Background removal"

    def ready(self):
        # Webhook events carry the API's representation of a task; services never import DRF,
        # so the API hands its builder to the webhooks service here.
        from removal.api import events
        from removal.services import webhooks

        webhooks.task_payload = events.task_payload
