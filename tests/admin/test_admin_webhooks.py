"""The admin's webhook deliveries: listed, and resent by staff."""

from __future__ import annotations

import pytest

from removal.models import WebhookDelivery
from removal.services import webhooks
from tests.factories import completed_task, make_user
from tests.helpers import deliver_all

Status = WebhookDelivery.Status


@pytest.mark.django_db(transaction=True)
def test_admin_lists_deliveries_and_resends(user, settings, receiver_for, webhooks_queue,
                                            client):
    receiver = receiver_for(user)
    task = completed_task(user, webhook_url=receiver.url())
    webhooks.task_event_emit(task_id=task.pk)
    deliver_all()
    staff = make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    page = client.get("/admin/removal/webhookdelivery/")
    assert page.status_code == 200 and receiver.url().encode() in page.content
    first = WebhookDelivery.objects.get(task=task)
    detail = client.get(f"/admin/removal/webhookdelivery/{first.pk}/change/")
    assert detail.status_code == 200 and first.message_id.encode() in detail.content
    response = client.post("/admin/removal/webhookdelivery/", {
        "action": "resend", "_selected_action": [str(first.pk)]})
    assert response.status_code == 302
    deliver_all()
    resent = WebhookDelivery.objects.get(task=task, attempt=2)
    assert resent.status == Status.SUCCEEDED and resent.message_id == first.message_id
    assert len(receiver.verified) == 2
