"""The Django admin as staff use it: task list, task page, actions, overview, RQ dashboard."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from removal import storage
from removal.admin import common as admin_common
from removal.models import Task, Upload
from tests.factories import make_task, make_upload, make_user
from tests.images import make_image

pytestmark = pytest.mark.django_db

TASKS = "/admin/removal/task/"
Status = Task.Status


@pytest.fixture
def staff(db):
    return make_user(is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def plain_client(client, user):
    client.force_login(user)
    return client


def bulk_tasks(n: int, *, owner=None, status=Status.COMPLETED) -> None:
    owners = [owner] if owner else [make_user() for _ in range(3)]
    uploads = Upload.objects.bulk_create([
        Upload(id=uuid.uuid4(), owner=owners[i % len(owners)], original_key=f"originals/x/{i}.jpg",
               original_filename=f"photo-{i}.jpg", format="JPEG", byte_size=1000, width=100,
               height=100, sha256="0" * 64)
        for i in range(n)
    ])
    Task.objects.bulk_create([
        Task(upload=u, status=status, progress=100, attempts=1, processing_time=2.5,
             model="isnet-general-use",
             metrics={"memory_usage_mb": 512.0, "model": "isnet-general-use"})
        for u in uploads
    ])


def action(client, name: str, tasks) -> object:
    return client.post(
        TASKS, {"action": name, "_selected_action": [str(t.pk) for t in tasks]}, follow=True
    )


# --- task list --------------------------------------------------------------------------------


def test_task_changelist_query_count_does_not_grow_with_rows(staff_client):
    bulk_tasks(10)
    with CaptureQueriesContext(connection) as few:
        response = staff_client.get(TASKS)
    assert response.status_code == 200
    bulk_tasks(400)
    with CaptureQueriesContext(connection) as many:
        response = staff_client.get(TASKS)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 100  # one full page
    assert len(many) == len(few)
    assert len(many) <= 12


@pytest.mark.parametrize("query", [
    "", "?status__exact=failed", "?model=isnet-general-use", "?q=photo-1", "?o=7",
    "?_facets=True", "?owner=someone@example.com", "?owner=%C2%B2",
    "?owner=99999999999999999999999",
])
def test_filtered_and_searched_changelists_stay_within_query_budget(
    staff_client, django_assert_max_num_queries, query
):
    bulk_tasks(150)
    with django_assert_max_num_queries(12):
        response = staff_client.get(TASKS + query)
    assert response.status_code == 200


def test_task_list_shows_the_issue_columns(staff_client, user):
    make_task(owner=user, status=Status.COMPLETED, processing_time=3.25,
              model="isnet-general-use", metrics={"memory_usage_mb": 612.4})
    response = staff_client.get(TASKS)
    html = response.content.decode()
    for header in ("Id", "Owner", "File name", "Status", "Time (s)", "Memory (MB)",
                   "Created"):
        assert header in html
    assert "3.25" in html and "612" in html and user.username in html


def test_filters_and_search_narrow_the_task_list(staff_client, user, other_user):
    mine = make_task(owner=user, status=Status.FAILED,
                     upload=make_upload(owner=user, original_filename="holiday-beach.jpg"))
    theirs = make_task(owner=other_user, status=Status.COMPLETED,
                       model="isnet-general-use-quant")

    def listed(query):
        return {t.pk for t in staff_client.get(TASKS + query).context["cl"].result_list}

    assert listed("?status__exact=failed") == {mine.pk}
    assert listed("?model=isnet-general-use-quant") == {theirs.pk}
    assert listed(f"?owner={other_user.email}") == {theirs.pk}
    assert listed(f"?owner={user.pk}") == {mine.pk}
    assert listed("?q=beach") == {mine.pk}
    assert listed(f"?q={other_user.email}") == {theirs.pk}
    assert listed(f"?q={theirs.pk}") == {theirs.pk}
    assert listed(f"?q={mine.upload_id}") == {mine.pk}
    assert listed(f"?upload={theirs.upload_id}") == {theirs.pk}


def test_file_name_search_lists_a_bounded_number_of_matches_and_says_so(
        staff_client, user, monkeypatch):
    monkeypatch.setattr(admin_common, "FILENAME_MATCHES_SHOWN", 2)
    beach = [make_task(owner=user, upload=make_upload(owner=user,
                                                      original_filename=f"Beach-{n}.jpg"))
             for n in range(3)]
    make_task(owner=user, upload=make_upload(owner=user, original_filename="forest.jpg"))

    response = staff_client.get(TASKS + "?q=BEACH-")
    listed = {t.pk for t in response.context["cl"].result_list}
    assert len(listed) == 2 and listed < {t.pk for t in beach}
    warnings = [str(m) for m in response.context["messages"]]
    assert any("More than 2 uploads have “BEACH-” in their file name" in m for m in warnings)

    response = staff_client.get("/admin/removal/upload/?q=beach-1")
    assert [u.pk for u in response.context["cl"].result_list] == [beach[1].upload_id]
    assert not list(response.context["messages"])


# --- task page --------------------------------------------------------------------------------


def test_task_page_shows_images_metrics_and_queue_details(staff_client, user):
    upload = make_upload(owner=user)
    storage.write(upload.original_key, make_image())
    started = timezone.now() - timedelta(seconds=5)
    task = make_task(
        upload=upload, status=Status.COMPLETED, attempts=2,
        result_key=f"results/{uuid.uuid4()}.png",
        processing_time=2.75, rq_job_id="task-abc-1234", started_at=started,
        finished_at=timezone.now(), error_message="",
        metrics={"memory_usage_mb": 700.5, "stage_timings": {"segment": 2.5}},
    )
    storage.write(task.result_key, make_image("PNG", mode="RGBA", color=(0, 0, 0, 0)))

    response = staff_client.get(f"{TASKS}{task.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "task-abc-1234" in html
    assert "stage_timings.segment" in html and "memory_usage_mb" in html and "700.5" in html
    assert "linear-gradient(45deg" in html  # result over a checkerboard
    assert 'name="_save"' not in html  # read-only page: changes go through actions

    # Both thumbnails are signed URLs that really return the stored bytes.
    urls = [part.split('"')[0] for part in html.split('<img src="')[1:]]
    assert len(urls) == 2
    bodies = [b"".join(staff_client.get(url.replace("&amp;", "&")).streaming_content)
              for url in urls]
    assert bodies[0] == storage.read(upload.original_key)
    assert bodies[1] == storage.read(task.result_key)


def test_failed_task_page_shows_the_error(staff_client, user):
    task = make_task(owner=user, status=Status.FAILED, error_message="Processing failed: boom")
    response = staff_client.get(f"{TASKS}{task.pk}/change/")
    assert response.status_code == 200
    assert "Processing failed: boom" in response.content.decode()


def test_upload_and_user_admins_render(staff_client, user):
    upload = make_upload(owner=user, original_filename="cat.png")
    assert staff_client.get("/admin/removal/upload/").status_code == 200
    page = staff_client.get(f"/admin/removal/upload/{upload.pk}/change/")
    assert page.status_code == 200 and "cat.png" in page.content.decode()
    users = staff_client.get(f"/admin/accounts/user/?q={user.email}")
    assert users.status_code == 200
    assert [u.pk for u in users.context["cl"].result_list] == [user.pk]


def test_user_list_links_to_each_users_uploads_and_tasks(staff_client, user):
    """accounts' user admin, extended by removal (removal/admin/users.py: accounts knows
    nothing of removal's pages)."""
    page = staff_client.get(f"/admin/accounts/user/?q={user.email}").content.decode()
    assert f'href="/admin/removal/upload/?owner={user.pk}"' in page
    assert f'href="{TASKS}?owner={user.pk}"' in page


# --- actions ----------------------------------------------------------------------------------


def test_retry_action_requeues_failed_tasks_and_skips_others(
    staff_client, user, empty_queue, django_capture_on_commit_callbacks
):
    failed = [make_task(owner=user, status=Status.FAILED, error_message="x") for _ in range(2)]
    done = make_task(owner=user, status=Status.COMPLETED)

    with django_capture_on_commit_callbacks(execute=True):
        response = action(staff_client, "retry_failed", [*failed, done])

    assert response.status_code == 200
    text = [str(m) for m in response.context["messages"]]
    assert text == ["Retried 2 failed task(s); skipped 1 that were not failed or could not be "
                    "retried (attempt limit or the owner's task cap)."]
    for task in failed:
        task.refresh_from_db()
        assert task.status == Status.QUEUED and task.error_message == ""
    done.refresh_from_db()
    assert done.status == Status.COMPLETED
    assert empty_queue.count == 2


def test_reprocess_action_creates_new_tasks_with_the_current_model(
    staff_client, user, empty_queue, settings, django_capture_on_commit_callbacks
):
    settings.QUICKBG_MODEL = "isnet-general-use"
    upload = make_upload(owner=user)
    same_upload = make_task(upload=upload, status=Status.FAILED)  # older task, same upload
    old = make_task(upload=upload, status=Status.COMPLETED,
                    model="isnet-general-use-quant", options={"format": "png"})
    failed = make_task(owner=user, status=Status.FAILED)
    busy = make_task(owner=user, status=Status.PROCESSING)

    with django_capture_on_commit_callbacks(execute=True):
        response = action(staff_client, "reprocess", [old, failed, busy, same_upload])

    text = [str(m) for m in response.context["messages"]]
    assert text[0].startswith("Queued 2 new task(s); skipped 2")
    new_for_old = Task.objects.filter(upload=old.upload, status=Status.QUEUED)
    assert new_for_old.count() == 1
    new = new_for_old.get()
    assert (new.model, new.options) == ("isnet-general-use", {"format": "png"})
    assert Task.objects.filter(upload=failed.upload, status=Status.QUEUED).count() == 1
    assert Task.objects.filter(upload=busy.upload).count() == 1
    old.refresh_from_db()
    assert old.status == Status.COMPLETED  # the old task is left alone
    assert empty_queue.count == 2


@pytest.mark.parametrize("name", ["retry_failed", "reprocess"])
def test_actions_are_refused_to_non_staff(plain_client, user, empty_queue, name):
    failed = make_task(owner=user, status=Status.FAILED)
    response = plain_client.post(
        TASKS, {"action": name, "_selected_action": [str(failed.pk)]}
    )
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert Task.objects.count() == 1
    failed.refresh_from_db()
    assert failed.status == Status.FAILED
    assert empty_queue.count == 0


@pytest.mark.parametrize("name", ["retry_failed", "reprocess"])
def test_actions_need_the_change_permission(client, user, empty_queue, name):
    viewer = make_user(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_task"))
    client.force_login(viewer)
    failed = make_task(owner=user, status=Status.FAILED)
    response = client.post(TASKS, {"action": name, "_selected_action": [str(failed.pk)]})
    assert response.status_code in (200, 302, 403)
    failed.refresh_from_db()
    assert failed.status == Status.FAILED
    assert Task.objects.count() == 1
    assert empty_queue.count == 0


# --- overview and the RQ dashboard ----------------------------------------------------------


def test_overview_page_reports_the_last_24_hours(
    staff_client, user, empty_queue, django_capture_on_commit_callbacks
):
    for seconds in (1.0, 2.0, 3.0, 4.0, 10.0):
        make_task(owner=user, status=Status.COMPLETED, processing_time=seconds)
    for _ in range(3):
        make_task(owner=user, status=Status.FAILED, error_message="Processing failed: disk full")
    make_task(owner=user, status=Status.FAILED, error_message="File is not a valid image")
    old = make_task(owner=user, status=Status.FAILED, error_message="ancient")
    Task.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=3),
        updated_at=timezone.now() - timedelta(days=3),
    )
    with django_capture_on_commit_callbacks(execute=True):
        empty_queue.enqueue("removal.jobs.process_task", "not-a-task")

    response = staff_client.get(TASKS + "overview/")

    assert response.status_code == 200
    ctx = response.context
    assert ctx["status_counts"] == {"queued": 0, "processing": 0, "completed": 5, "failed": 4,
                                    "expired": 0}
    assert ctx["median"] == pytest.approx(3.0)
    assert ctx["p95"] == pytest.approx(8.8)  # linear interpolation, as percentile_cont
    assert ctx["queue"].available and ctx["queue"].queued == 1
    assert [(f["message"], f["n"]) for f in ctx["failures"]] == [
        ("Processing failed: disk full", 3), ("File is not a valid image", 1),
    ]
    html = response.content.decode()
    assert "/admin/rq/" in html and "disk full" in html


def test_overview_is_staff_only(client, plain_client):
    assert plain_client.get(TASKS + "overview/").status_code == 302
    client.logout()
    assert client.get(TASKS + "overview/").status_code == 302


def test_admin_index_links_to_overview_and_rq_dashboard(staff_client):
    html = staff_client.get("/admin/").content.decode()
    assert 'href="/admin/removal/task/overview/"' in html
    assert 'href="/admin/rq/"' in html
    assert staff_client.get("/admin/rq/").status_code == 200


@pytest.mark.parametrize("path", ["/admin/rq/", "/admin/rq/queues/0/", "/admin/rq/workers/0/",
                                  "/admin/rq/stats.json", "/admin/rq/metrics"])
def test_rq_dashboard_is_closed_to_anonymous_and_non_staff(client, user, path):
    anonymous = client.get(path)
    assert anonymous.status_code in (302, 401)
    if anonymous.status_code == 302:
        assert "/admin/login/" in anonymous["Location"]
    client.force_login(user)
    logged_in = client.get(path)
    assert logged_in.status_code in (302, 401)
    assert b"quickbg" not in logged_in.content.lower()


def test_unfiltered_task_list_uses_the_row_estimate_on_a_big_table(staff_client):
    if connection.vendor != "postgresql":
        pytest.skip("the estimate is PostgreSQL's")
    bulk_tasks(10_050)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE removal_task")
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(TASKS)
    assert response.status_code == 200
    assert response.context["cl"].result_count == pytest.approx(10_050, rel=0.1)
    assert not any("COUNT(*)" in q["sql"].upper() and "removal_task" in q["sql"]
                   for q in queries.captured_queries)
    # A filtered list is counted exactly.
    failed = staff_client.get(TASKS + "?status__exact=failed")
    assert failed.context["cl"].result_count == 0


def test_task_page_thumbnails_are_presigned_s3_urls(staff_client, user, s3):
    import requests

    upload = make_upload(owner=user)
    original = make_image()
    storage.write(upload.original_key, original)
    task = make_task(upload=upload, status=Status.COMPLETED,
                     result_key=f"results/{uuid.uuid4()}.png")
    result = make_image("PNG", mode="RGBA", color=(0, 0, 0, 0))
    storage.write(task.result_key, result)

    html = staff_client.get(f"{TASKS}{task.pk}/change/").content.decode()

    urls = [part.split('"')[0].replace("&amp;", "&") for part in html.split('<img src="')[1:]]
    assert len(urls) == 2 and all("X-Amz-Signature=" in url for url in urls)
    assert [requests.get(url, timeout=10).content for url in urls] == [original, result]


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_retried_task_is_processed_by_a_real_worker(client, user, run_worker, empty_queue):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    upload = make_upload(owner=user, width=400, height=300)
    storage.write(upload.original_key, fixture_car_small())
    failed = make_task(upload=upload, status=Status.FAILED, attempts=1,
                       error_message="Processing failed: worker lost")

    action(client, "retry_failed", [failed])
    assert empty_queue.count == 1
    run_worker()

    failed.refresh_from_db()
    assert failed.status == Status.COMPLETED, failed.error_message
    assert failed.attempts == 1 and failed.error_message == ""  # a retry starts a new count
    assert storage.exists(failed.result_key)


def fixture_car_small() -> bytes:
    import io

    from PIL import Image

    from tests.images import fixture_bytes

    image = Image.open(io.BytesIO(fixture_bytes("car-1.jpg")))
    image.thumbnail((400, 400))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


# --- scale: search kinds, counts, expired rows --------------------------------------------------


def listed(response) -> set:
    return {str(obj.pk) for obj in response.context["cl"].result_list}


def test_search_kinds_each_use_their_own_match(staff_client):
    alice, bob = make_user(email="alice@example.com"), make_user()
    pasta = make_task(owner=alice, upload=make_upload(owner=alice, original_filename="Pasta.jpg"))
    other = make_task(owner=bob, upload=make_upload(owner=bob, original_filename="pasta-2.png"))
    plain = make_task(owner=bob)

    assert listed(staff_client.get(TASKS, {"q": str(pasta.pk)})) == {str(pasta.pk)}
    assert listed(staff_client.get(TASKS, {"q": str(other.upload_id)})) == {str(other.pk)}
    assert listed(staff_client.get(TASKS, {"q": "ALICE@example.com"})) == {str(pasta.pk)}
    assert listed(staff_client.get(TASKS, {"q": "alice@"})) == set()  # emails match exactly
    assert listed(staff_client.get(TASKS, {"q": "PASTA"})) == {str(pasta.pk), str(other.pk)}
    assert listed(staff_client.get(TASKS, {"q": "pa"})) == set()  # under three characters
    assert str(plain.pk) in listed(staff_client.get(TASKS, {"q": "image"}))
    uploads = staff_client.get("/admin/removal/upload/", {"q": "asta"})
    assert listed(uploads) == {str(pasta.upload_id), str(other.upload_id)}


def test_filtered_count_is_exact_when_small_and_estimated_when_large(staff_client, monkeypatch):
    from removal.admin import EstimatedCountPaginator

    bulk_tasks(30, status=Status.FAILED)
    bulk_tasks(5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE removal_task")
    response = staff_client.get(TASKS, {"status__exact": "failed"})
    assert response.context["cl"].result_count == 30  # exact: under EXACT_UP_TO

    monkeypatch.setattr(EstimatedCountPaginator, "EXACT_UP_TO", 10)
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(TASKS, {"status__exact": "failed"})
    count = response.context["cl"].result_count
    assert 11 <= count <= 35  # the planner's estimate, never below what was seen
    sqls = [q["sql"] for q in queries.captured_queries]
    assert any(sql.startswith("EXPLAIN (FORMAT JSON)") for sql in sqls)
    assert not any("COUNT(*)" in sql and "LIMIT" not in sql for sql in sqls)


def test_expired_task_page_says_retention_deleted_the_images(staff_client):
    task = make_task(status=Status.EXPIRED)
    Upload.objects.filter(pk=task.upload_id).update(expired_at=timezone.now())
    page = staff_client.get(f"{TASKS}{task.pk}/change/")
    assert page.status_code == 200
    assert page.content.decode().count("Deleted by retention on") == 2  # original and result
    listing = staff_client.get(TASKS, {"status__exact": "expired"})
    assert listed(listing) == {str(task.pk)}
    assert "quickbg-thumb" not in listing.content.decode()  # no link to a deleted image
