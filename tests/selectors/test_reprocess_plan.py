"""``selectors.reprocess_plan`` on a few thousand rows: the set-based rules give exactly what the
rules say task by task, and an interrupted ``reprocess`` resumes without queueing twice."""

from __future__ import annotations

import io
import random
from collections import Counter

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from removal import selectors
from removal.models import Task, Upload
from tests.factories import make_user

pytestmark = pytest.mark.django_db
Status = Task.Status
CURRENT, OLD = "isnet-general-use", "isnet-general-use-quant"


def seed(settings, *, uploads: int = 1200) -> None:
    """~3000 tasks: 1–4 per upload, every status, expired uploads, reprocess links, and
    ``created_at`` ties (many tasks share a second, so the ``id`` tie-break matters)."""
    settings.QUICKBG_MODEL = CURRENT
    rng = random.Random(15)
    owner = make_user()
    rows = Upload.objects.bulk_create([
        Upload(owner=owner, original_key=f"originals/{owner.pk}/{i}/a.jpg", format="JPEG",
               byte_size=1, width=60, height=60, sha256="0" * 64,
               expired_at=timezone.now() if i % 50 == 0 else None)
        for i in range(uploads)
    ])
    tasks = []
    for upload in rows:
        for _ in range(rng.randint(1, 4)):
            status = (Status.EXPIRED if upload.expired_at else rng.choice(
                [Status.COMPLETED, Status.COMPLETED, Status.FAILED, Status.FAILED, Status.QUEUED,
                 Status.PROCESSING]))
            tasks.append(Task(upload=upload, status=status, model=rng.choice([CURRENT, OLD])))
    Task.objects.bulk_create(tasks)
    for task in rng.sample(tasks, len(tasks) // 10):  # a tenth were made by a reprocess
        siblings = [t for t in tasks if t.upload_id == task.upload_id and t is not task]
        if siblings:
            task.reprocess_of = rng.choice(siblings)
    Task.objects.bulk_update(tasks, ["reprocess_of"])
    with connection.cursor() as cursor:  # ties: 600 distinct seconds for ~3000 tasks
        cursor.execute("UPDATE removal_task SET created_at = now() - interval '1 day' "
                       "+ (abs(hashtext(id::text)) % 600) * interval '1 second'")


def expected_plan(selection) -> dict:
    """The rules, task by task, in Python (the reference the SQL must match)."""
    busy = set(Task.objects.filter(status__in=selectors.IN_FLIGHT)
               .values_list("upload_id", flat=True))
    reprocessed = set(Task.objects.filter(model=CURRENT, reprocess_of__isnull=False)
                      .values_list("reprocess_of_id", flat=True))
    seen, plan = set(), {}
    for task in selection.select_related("upload").order_by("created_at", "id"):
        if task.status in selectors.IN_FLIGHT:
            plan[task.pk] = selectors.SKIP_IN_FLIGHT
        elif task.status == Status.EXPIRED or task.upload.expired_at:
            plan[task.pk] = selectors.SKIP_EXPIRED
        elif task.upload_id in seen:
            plan[task.pk] = selectors.SKIP_SAME_UPLOAD
        else:
            seen.add(task.upload_id)
            plan[task.pk] = (selectors.SKIP_UPLOAD_BUSY if task.upload_id in busy
                             else selectors.SKIP_DONE if task.pk in reprocessed else None)
    return plan


@pytest.mark.parametrize("statuses", [None, ["failed"], ["completed", "failed", "expired"]])
def test_set_based_plan_matches_the_rules_task_by_task(settings, statuses):
    seed(settings)
    selection = selectors.tasks_matching(statuses=statuses)
    expected = expected_plan(selection)
    assert len(expected) >= (2500 if statuses is None else 500)
    assert len(set(expected.values())) >= (6 if statuses is None else 3)

    walked = [(task.pk, skip) for task, skip in selectors.reprocess_plan(selection, chunk_size=97)]

    assert [pk for pk, _ in walked] == list(expected)  # oldest first, each task once
    assert dict(walked) == expected
    assert selectors.reprocess_counts(selection) == dict(Counter(expected.values()))


def reprocess(*args) -> str:
    out = io.StringIO()
    call_command("reprocess", *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_interrupted_reprocess_resumes_and_queues_each_upload_once(settings,
                                                                   django_capture_on_commit_callbacks):
    seed(settings, uploads=400)
    selection = selectors.tasks_matching(statuses=["failed"])
    plan = expected_plan(selection)
    to_queue = [pk for pk, skip in plan.items() if skip is None]
    done_before = sum(1 for skip in plan.values() if skip == selectors.SKIP_DONE)
    assert len(to_queue) > 60

    with django_capture_on_commit_callbacks(execute=True):
        first = reprocess("--status", "failed", "--limit", "50")  # "interrupted" after 50
    assert "Done: 50 queued" in first
    # The new tasks finish before the operator runs it again (the busy rule alone would not
    # notice them any more).
    Task.objects.filter(reprocess_of__in=to_queue, status=Status.QUEUED).update(
        status=Status.COMPLETED)

    with django_capture_on_commit_callbacks(execute=True):
        second = reprocess("--status", "failed")

    assert f"Done: {len(to_queue) - 50} queued" in second
    assert f"{50 + done_before} skipped (already reprocessed)" in second
    made = Counter(Task.objects.filter(reprocess_of__in=to_queue, model=CURRENT)
                   .values_list("reprocess_of_id", flat=True))
    assert set(made) == set(to_queue) and set(made.values()) == {1}
