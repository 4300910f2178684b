"""removal.services.webhooks: both secrets verify (``standardwebhooks`` itself) for a grace period
after a rotation, the default retry schedule, deleting an endpoint cancels its pending retries."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from removal.models import WebhookDelivery
from removal.services import webhooks
from tests.factories import completed_task
from tests.helpers import deliver_all

Status = WebhookDelivery.Status


@pytest.mark.django_db
def test_after_rotation_both_secrets_verify_for_a_grace_period(user):
    old = webhooks.secret_get(owner=user).secret
    new = webhooks.secret_rotate(owner=user)
    now = timezone.now()
    header = webhooks.sign(secret=new, message_id="msg_1", timestamp=now, body="{}")
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": header}
    assert len(header.split(" ")) == 2
    for secret in (old, new.secret):
        Webhook(secret).verify("{}", headers)
    WebhookSecretModel = type(new)
    WebhookSecretModel.objects.filter(pk=new.pk).update(
        rotated_at=now - webhooks.ROTATION_GRACE - timedelta(seconds=1))
    new.refresh_from_db()
    header = webhooks.sign(secret=new, message_id="msg_1", timestamp=now, body="{}")
    assert len(header.split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify("{}", {**headers, "webhook-signature": header})


def test_default_retry_schedule_first_within_30s_growing_over_a_day():
    from django.conf import settings

    delays = settings.QUICKBG_WEBHOOK_RETRY_DELAYS
    assert delays[0] <= 30
    assert all(later >= earlier for earlier, later in zip(delays, delays[1:], strict=False))
    assert sum(delays) >= 24 * 3600


@pytest.mark.django_db(transaction=True)
def test_deleting_an_endpoint_cancels_its_pending_retries(user, client_for, settings,
                                                          receiver_for, webhooks_queue):
    settings.QUICKBG_WEBHOOK_RETRY_DELAYS = [1]
    receiver = receiver_for(user, answers=(500,))
    client = client_for(user)
    endpoint = client.post("/api/v1/webhooks", {"url": receiver.url()}, format="json").json()
    webhooks.task_event_emit(task_id=completed_task(user).pk)
    deliver_all()
    retry = WebhookDelivery.objects.get(attempt=2)
    assert retry.status == Status.PENDING
    assert client.delete(f"/api/v1/webhooks/{endpoint['id']}").status_code == 204
    retry.refresh_from_db()
    assert retry.status == Status.FAILED and retry.error == "The webhook endpoint was deleted"
    time.sleep(1.2)
    deliver_all()  # the scheduled job runs, finds nothing pending, sends nothing
    assert len(receiver.requests) == 1
