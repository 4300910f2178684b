"""A batch's status derives from its members' counts by one table of rules
(``selectors.BATCH_STATUS_RULES``), read in Python and in SQL alike."""

from __future__ import annotations

import itertools

import pytest

from removal import selectors, stats
from removal.models import Batch, Task
from tests.factories import make_task

pytestmark = pytest.mark.django_db

Status = Task.Status
COUNTED = (Status.QUEUED, Status.PROCESSING, Status.COMPLETED, Status.FAILED)


def make_batch(owner, **members: int) -> Batch:
    batch = Batch.objects.create(owner=owner, model="isnet-general-use",
                                 size=sum(members.values()))
    for status, n in members.items():
        for _ in range(n):
            make_task(owner=owner, batch=batch, status=status)
    return batch


def counts(**members: int) -> dict[str, int]:
    return {value: members.get(value, 0) for value in Status.values}


@pytest.mark.parametrize(("members", "status"), [
    ({}, "completed"),
    ({"queued": 2}, "queued"),
    ({"queued": 1, "processing": 1}, "processing"),
    ({"queued": 1, "completed": 1}, "processing"),
    ({"queued": 1, "failed": 1}, "processing"),
    ({"processing": 1, "completed": 3}, "processing"),
    ({"completed": 2}, "completed"),
    ({"completed": 1, "expired": 1}, "completed"),
    ({"failed": 2}, "failed"),
    ({"completed": 1, "failed": 1}, "partial"),
])
def test_batch_status_follows_the_rules_in_python(members, status):
    assert selectors.batch_status(counts(**members)) == status


def test_sql_and_python_derive_the_same_status_for_every_mix_of_members(user):
    mixes = [dict(zip(COUNTED, ns, strict=True)) for ns in itertools.product((0, 1), repeat=4)]
    made = {make_batch(user, **mix).pk: mix for mix in mixes}
    rows = selectors.batches_with_counts().annotate(sql=selectors.batch_status_expression())
    derived = {batch.pk: (batch.sql, selectors.batch_status(selectors.batch_counts(batch)))
               for batch in rows}
    assert set(derived) == set(made)
    disagree = {str(made[pk]): pair for pk, pair in derived.items() if pair[0] != pair[1]}
    assert not disagree
    # Every status is reached by some mix, so the comparison covers every rule.
    assert {sql for sql, _ in derived.values()} == set(selectors.BATCH_STATUSES)


def test_batch_status_counts_is_one_grouped_query(user, django_assert_num_queries):
    make_batch(user, queued=2)
    make_batch(user, queued=1, completed=1)
    make_batch(user, completed=2)
    make_batch(user, completed=1)
    make_batch(user, failed=1)
    make_batch(user, completed=1, failed=2)
    with django_assert_num_queries(1):
        found = stats.batch_status_counts()
    assert found == {"queued": 1, "processing": 1, "completed": 2, "failed": 1, "partial": 1}


def test_batch_status_filter_selects_one_derived_status(user):
    partial = make_batch(user, completed=1, failed=1)
    make_batch(user, completed=1)
    rows = selectors.batches_with_counts().filter(selectors.batch_status_filter("partial"))
    assert [batch.pk for batch in rows] == [partial.pk]
