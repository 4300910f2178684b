"""The task completion signal: ``queue.announce_task_done`` / ``queue.wait_task_done``, and
``services.tasks.task_wait`` on top of them (no database polling)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from removal import queue
from removal.errors import TimedOut
from removal.services.tasks import task_wait
from tests.factories import make_task


def test_an_announcement_made_before_the_wait_is_not_lost():
    task_id = uuid.uuid4()
    queue.announce_task_done(task_id)
    started = time.monotonic()
    assert queue.wait_task_done(task_id, timeout=5) is True
    assert time.monotonic() - started < 1
    # Consumed: a second wait has nothing to take.
    assert queue.wait_task_done(task_id, timeout=0.2) is False


def test_the_wait_outlasts_the_connections_socket_timeout():
    """The queue's Redis connection times reads out after 5 s; a longer wait must not fail."""
    task_id = uuid.uuid4()
    timer = threading.Timer(5.5, queue.announce_task_done, args=(task_id,))
    timer.start()
    try:
        started = time.monotonic()
        assert queue.wait_task_done(task_id, timeout=10) is True
        assert 5.4 < time.monotonic() - started < 8
    finally:
        timer.cancel()


def test_the_signal_key_expires_when_nobody_waits():
    task_id = uuid.uuid4()
    queue.announce_task_done(task_id)
    ttl = queue.get_queue().connection.ttl(queue.done_key(task_id))
    assert 0 < ttl <= queue.DONE_TTL
    queue.get_queue().connection.delete(queue.done_key(task_id))


@pytest.mark.django_db
def test_task_wait_times_out_with_the_task_id():
    task = make_task()
    started = time.monotonic()
    with pytest.raises(TimedOut) as caught:
        task_wait(task=task, timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 3
    assert caught.value.task_id == str(task.pk)
    assert f"GET /api/v1/tasks/{task.pk}" in caught.value.detail


@pytest.mark.django_db(transaction=True)
def test_a_task_the_reconciler_gives_up_on_is_announced():
    from removal.services.tasks import task_recover

    task = make_task(status="processing", attempts=4)
    assert task_recover(task_id=task.pk, status="processing", attempts=4) == "failed"
    assert queue.wait_task_done(task.pk, timeout=1) is True
