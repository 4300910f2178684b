"""The admin for batches, the reworked task changelist, and the task page's buttons."""

from __future__ import annotations

import re

import pytest

from removal import queue
from removal.models import Batch, Task
from removal.services import batches as batch_services
from tests.factories import make_task, make_upload, make_user
from tests.helpers import named
from tests.images import make_image

pytestmark = pytest.mark.django_db

TASKS = "/admin/removal/task/"
BATCHES = "/admin/removal/batch/"
Status = Task.Status


@pytest.fixture
def staff_client(client, db):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def make_batch(owner, statuses):
    batch = Batch.objects.create(owner=owner, model="isnet-general-use", size=len(statuses))
    tasks = [make_task(upload=make_upload(owner=owner, original_filename=f"item-{n}.jpg"),
                       batch=batch, status=status,
                       progress=100 if status in (Status.COMPLETED, Status.FAILED) else 0)
             for n, status in enumerate(statuses)]
    return batch, tasks


def test_task_changelist_has_thumbnail_short_id_file_name_and_badge(staff_client, user):
    task = make_task(owner=user, status=Status.FAILED,
                     upload=make_upload(owner=user, original_filename="holiday.jpg"))
    html = staff_client.get(TASKS).content.decode()
    assert f'<span class="quickbg-id" title="{task.pk}">{str(task.pk)[:8]}</span>' in html
    assert '<span class="quickbg-badge failed">failed</span>' in html
    assert 'class="quickbg-thumb"' in html and "holiday.jpg" in html
    assert "admin/quickbg/admin.css" in html
    # No column repeating "Task <uuid> (status)", and the full id is not a cell's text.
    assert "column-__str__" not in html and "field-__str__" not in html
    assert not re.search(rf">\s*(Task )?{task.pk}[^<]*<", html)


def test_batch_changelist_shows_owner_size_status_progress_and_filters(staff_client, user):
    partial, _ = make_batch(user, [Status.COMPLETED, Status.FAILED])
    running, _ = make_batch(user, [Status.COMPLETED, Status.QUEUED, Status.QUEUED,
                                   Status.QUEUED])
    html = staff_client.get(BATCHES).content.decode()
    assert '<span class="quickbg-badge partial">partial</span>' in html
    assert '<span class="quickbg-badge processing">processing</span>' in html
    assert 'value="25">25%' in html and 'value="100">100%' in html
    assert user.username in html

    def listed(query):
        return {b.pk for b in staff_client.get(BATCHES + query).context["cl"].result_list}

    assert listed("?status=partial") == {partial.pk}
    assert listed("?status=processing") == {running.pk}
    assert listed("?status=completed") == set()
    assert listed(f"?owner={user.email}") == {partial.pk, running.pk}


def test_batch_page_shows_member_thumbnails_and_statuses(staff_client, user):
    batch, tasks = make_batch(user, [Status.COMPLETED, Status.FAILED])
    html = staff_client.get(f"{BATCHES}{batch.pk}/change/").content.decode()
    assert html.count('class="quickbg-thumb"') == 2
    for task in tasks:
        assert f"/admin/removal/task/{task.pk}/change/" in html
    assert "item-0.jpg" in html and "item-1.jpg" in html
    assert '<span class="quickbg-badge failed">failed</span>' in html


def test_batch_actions_retry_failed_members_and_reprocess(staff_client, user):
    batch, tasks = make_batch(user, [Status.COMPLETED, Status.FAILED])
    response = staff_client.post(BATCHES, {"action": "retry_failed_members",
                                           "_selected_action": [str(batch.pk)]}, follow=True)
    assert "Retried 1 failed member(s)" in response.content.decode()
    assert Task.objects.get(pk=tasks[1].pk).status == Status.QUEUED
    assert Task.objects.get(pk=tasks[0].pk).status == Status.COMPLETED
    Task.objects.filter(pk=tasks[1].pk).update(status=Status.COMPLETED)
    response = staff_client.post(BATCHES, {"action": "reprocess_batch",
                                           "_selected_action": [str(batch.pk)]}, follow=True)
    assert "Queued 1 new batch(es)" in response.content.decode()
    new = Batch.objects.exclude(pk=batch.pk).get()
    assert new.size == 2
    assert set(new.tasks.values_list("upload_id", flat=True)) == {t.upload_id for t in tasks}
    assert set(new.tasks.values_list("status", flat=True)) == {"queued"}


def test_reprocessing_a_batch_leaves_out_members_whose_images_expired(user):
    from django.utils import timezone

    from removal.errors import Conflict
    from removal.models import Upload

    batch, (kept, expired) = make_batch(user, [Status.COMPLETED, Status.EXPIRED])
    Upload.objects.filter(pk=expired.upload_id).update(expired_at=timezone.now())
    new = batch_services.batch_reprocess(batch=batch)
    assert new.size == 1
    assert list(new.tasks.values_list("upload_id", flat=True)) == [kept.upload_id]
    Upload.objects.filter(pk=kept.upload_id).update(expired_at=timezone.now())
    with pytest.raises(Conflict, match="no members whose images are still stored"):
        batch_services.batch_reprocess(batch=batch)


def test_task_page_links_to_its_batch_and_shows_buttons_that_apply(staff_client, user):
    batch, (done, failed) = make_batch(user, [Status.COMPLETED, Status.FAILED])
    html = staff_client.get(f"{TASKS}{failed.pk}/change/").content.decode()
    assert f"/admin/removal/batch/{batch.pk}/change/" in html
    assert 'id="task-retry"' in html and 'id="task-reprocess"' in html
    queued = make_task(owner=user, status=Status.QUEUED)
    html = staff_client.get(f"{TASKS}{queued.pk}/change/").content.decode()
    assert 'id="task-retry"' not in html and 'id="task-reprocess"' not in html
    html = staff_client.get(f"{TASKS}{done.pk}/change/").content.decode()
    assert 'id="task-retry"' not in html and 'id="task-reprocess"' in html


def test_task_page_retry_and_reprocess_buttons_go_through_the_services(staff_client, user):
    failed = make_task(owner=user, status=Status.FAILED, error_message="boom")
    response = staff_client.post(f"{TASKS}{failed.pk}/retry/", follow=True)
    assert "The task was queued again." in response.content.decode()
    failed.refresh_from_db()
    assert (failed.status, failed.error_message) == (Status.QUEUED, "")
    assert staff_client.get(f"{TASKS}{failed.pk}/retry/").status_code == 403  # POST only
    again = staff_client.post(f"{TASKS}{failed.pk}/retry/", follow=True)
    assert "Only failed tasks can be retried" in again.content.decode()
    Task.objects.filter(pk=failed.pk).update(status=Status.COMPLETED)
    response = staff_client.post(f"{TASKS}{failed.pk}/reprocess/")
    new = Task.objects.exclude(pk=failed.pk).get(upload_id=failed.upload_id)
    assert response.status_code == 302
    assert response["Location"] == f"{TASKS}{new.pk}/change/"


def test_task_buttons_need_staff(client, user):
    task = make_task(owner=user, status=Status.FAILED)
    client.force_login(user)
    assert client.post(f"{TASKS}{task.pk}/retry/").status_code == 302  # to the admin login
    assert Task.objects.get(pk=task.pk).status == Status.FAILED


def test_reprocess_command_selects_a_batch(user):
    from django.core.management import call_command

    batch, tasks = make_batch(user, [Status.COMPLETED, Status.FAILED])
    make_task(owner=user, status=Status.COMPLETED)  # not in the batch
    call_command("reprocess", "--batch", str(batch.pk), "--no-progress")
    new = Task.objects.filter(status=Status.QUEUED)
    assert {t.upload_id for t in new} == {t.upload_id for t in tasks}


def test_api_created_batch_appears_in_admin(staff_client, user, client_for):
    body = client_for(user).post(
        "/api/v1/batches", {"files": [named(make_image("JPEG", (60, 60)), "a.jpg")]},
        format="multipart").json()
    html = staff_client.get(f"{BATCHES}{body['batch_id']}/change/").content.decode()
    assert "a.jpg" in html and "queued" in html
    assert batch_services.batch_member_finished(batch_id=body["batch_id"]) is False


def test_metrics_and_overview_count_batches(staff_client, client, user, settings):
    from prometheus_client.parser import text_string_to_metric_families

    make_batch(user, [Status.COMPLETED, Status.FAILED])  # partial
    make_batch(user, [Status.COMPLETED])  # completed
    make_batch(user, [Status.QUEUED, Status.QUEUED])  # queued
    settings.QUICKBG_METRICS_TOKEN = "tok"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer tok")
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    by_status = {s.labels["status"]: s.value for s in families["quickbg_batches"].samples}
    assert by_status == {"queued": 1, "processing": 0, "completed": 1, "partial": 1, "failed": 0}
    queues = {s.labels["queue"] for s in families["quickbg_queue_jobs"].samples}
    assert queues == set(queue.all_task_queue_names())  # every model's, interactive and batch
    html = staff_client.get(TASKS + "overview/").content.decode()
    table = html.split('id="batch-counts"')[1].split("</table>")[0]
    cells = re.findall(r"\?status=(\w+)\">(\d+)</a>", table)
    assert dict(cells) == {"queued": "1", "processing": "0", "completed": "1", "partial": "1",
                           "failed": "0"}
    assert 'id="batch-queue"' in html
