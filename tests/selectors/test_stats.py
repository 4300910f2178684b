"""stats: the numbers behind the overview page and /metrics."""

from __future__ import annotations

import pytest

from removal.stats import _percentiles_python


def test_python_percentiles_interpolate_like_percentile_cont():
    # PostgreSQL: SELECT percentile_cont(ARRAY[0, 0.5, 0.95, 1]) WITHIN GROUP (ORDER BY v)
    # FROM unnest(ARRAY[1, 2, 3, 10]) v  ->  {1, 2.5, 8.95, 10}
    assert _percentiles_python([10.0, 1.0, 3.0, 2.0], (0.0, 0.5, 0.95, 1.0)) == pytest.approx(
        [1.0, 2.5, 8.95, 10.0])
    assert _percentiles_python([4.0], (0.5, 0.95)) == [4.0, 4.0]
    assert _percentiles_python([], (0.5, 0.95)) == [None, None]


@pytest.mark.django_db
def test_python_percentiles_agree_with_postgresql():
    from django.db import connection

    values = [0.3, 1.7, 2.2, 2.9, 4.4, 8.0, 13.5]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT percentile_cont(%s) WITHIN GROUP (ORDER BY v) FROM unnest(%s) AS v",
            [[0.5, 0.95], values],
        )
        expected = cursor.fetchone()[0]
    assert _percentiles_python(values, (0.5, 0.95)) == pytest.approx(expected)
