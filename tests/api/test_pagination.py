"""Cursor pagination of ``GET tasks`` and ``GET uploads`` on ``(created_at, id)``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from removal.models import Task, Upload
from tests.factories import make_task

pytestmark = pytest.mark.django_db


def walk(client, url: str) -> tuple[list[dict], list[dict]]:
    """Follow ``next`` to the end; return the rows and every page's body."""
    rows, pages = [], []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        pages.append(body)
        rows += body["results"]
        url = body["next"]
    return rows, pages


def seed(user, n: int, *, same_instant: int) -> list[Task]:
    """``n`` tasks of ``user``; the newest ``same_instant`` share one ``created_at``."""
    tasks = [make_task(owner=user) for _ in range(n)]
    base = timezone.now() - timedelta(days=1)
    for i, task in enumerate(tasks):
        moment = base + timedelta(seconds=min(i, n - same_instant))
        Task.objects.filter(pk=task.pk).update(created_at=moment)
        Upload.objects.filter(pk=task.upload_id).update(created_at=moment)
    return tasks


@pytest.mark.parametrize(("path", "id_field", "model"), [
    ("/api/v1/tasks", "task_id", Task),
    ("/api/v1/uploads", "upload_id", Upload),
])
def test_cursor_walks_every_row_once_newest_first_with_ties(user, other_user, client_for,
                                                             path, id_field, model):
    seed(user, 7, same_instant=4)  # four rows created in the same microsecond
    make_task(owner=other_user)
    client = client_for(user)

    rows, pages = walk(client, f"{path}?page_size=2")

    expected = list(model.objects.filter(
        **({"upload__owner": user} if model is Task else {"owner": user})
    ).order_by("-created_at", "-id").values_list("pk", flat=True))
    assert [row[id_field] for row in rows] == [str(pk) for pk in expected]
    assert len(expected) == 7 and [len(p["results"]) for p in pages] == [2, 2, 2, 1]
    assert pages[0]["previous"] is None and pages[-1]["next"] is None
    assert all("count" not in page for page in pages)
    assert "cursor=" in pages[0]["next"]


def test_previous_link_returns_the_page_before(user, client_for):
    seed(user, 5, same_instant=3)
    client = client_for(user)
    first = client.get("/api/v1/tasks?page_size=2").json()
    second = client.get(first["next"]).json()
    back = client.get(second["previous"]).json()
    assert [r["task_id"] for r in back["results"]] == [r["task_id"] for r in first["results"]]
    assert back["previous"] is None and back["next"]


def test_old_page_parameter_is_a_400_pointing_to_cursor(user, client_for):
    make_task(owner=user)
    client = client_for(user)
    for path in ("/api/v1/tasks?page=2", "/api/v1/uploads?page=1"):
        response = client.get(path)
        assert response.status_code == 400
        assert "cursor" in response.json()["detail"] and "next" in response.json()["detail"]


def test_tampered_cursor_is_rejected(user, client_for):
    make_task(owner=user)
    response = client_for(user).get("/api/v1/tasks?cursor=cD1ub3QtYS1kYXRl")  # "p=not-a-date"
    assert response.status_code == 404
    assert response.json()["detail"] == "Invalid cursor"


def test_schema_documents_cursor_and_the_removed_page_parameter(client):
    schema = client.get("/api/v1/schema?format=json").json()
    for path in ("/api/v1/tasks", "/api/v1/uploads"):
        parameters = {p["name"]: p for p in schema["paths"][path]["get"]["parameters"]}
        assert "cursor" in parameters and "page_size" in parameters
        assert parameters["page"]["deprecated"] is True
        assert "400" in parameters["page"]["description"]
