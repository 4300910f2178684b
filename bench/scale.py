"""Scale: the API lists, admin, ``/metrics`` and bulk commands at 1M (or 10M) tasks.

Seeds N tasks (one upload each, one user, 5 % failed, spread over a year) straight into a bench
PostgreSQL database with ``INSERT ... SELECT generate_series`` (no Python per row), then times
each surface in-process through Django's test client (the full view, serializer and SQL path,
without a network hop) and prints the plan (``EXPLAIN ANALYZE``) of each surface's slowest query
on the task and upload tables.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/quickbg_bench_scale \\
    .venv/bin/python bench/scale.py                # 1M tasks (seeded once, reused)
    .venv/bin/python bench/scale.py --tasks 10000000
    .venv/bin/python bench/scale.py --tasks 100000 --reseed --no-plans

Targets (issue 15): lists ≤ 50 ms p50 at any depth; admin search ≤ 300 ms at 10M; reprocess dry
run over 1M matching tasks ≤ 10 s; ``/metrics`` and the overview without a table scan.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ensure_database  # noqa: E402 - bench/ is not a package

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/quickbg_bench_scale"
CHUNK = 1_000_000  # rows per INSERT statement


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DEBUG", "true")  # the test client's host; no secret needed
    os.environ.setdefault("QUICKBG_QUEUE", "quickbg-bench-scale")
    os.environ["QUICKBG_METRICS_TOKEN"] = "bench-token"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickbg.settings")
    import django

    django.setup()


# --- Seeding ------------------------------------------------------------------------------------

UPLOADS_SQL = """
INSERT INTO removal_upload (id, owner_id, original_key, original_filename, format, byte_size,
                            width, height, sha256, created_at, expired_at)
SELECT md5('u' || i)::uuid, %(owner)s,
       'originals/' || %(owner)s || '/' || md5('u' || i)::uuid || '/photo_' || i || '.jpg',
       'photo_' || i || '.jpg', 'JPEG', 200000 + i %% 50000, 1200, 800,
       md5('s' || i) || md5('t' || i),
       %(start)s::timestamptz + (i * %(step)s) * interval '1 second', NULL
FROM generate_series(%(low)s, %(high)s) AS i
"""

TASKS_SQL = """
INSERT INTO removal_task (id, upload_id, status, progress, attempts, model, options, result_key,
                          error_message, processing_time, metrics, rq_job_id, created_at,
                          updated_at, started_at, finished_at, reprocess_of_id,
                          lifetime_attempts, background_key, cached, webhook_url)
SELECT md5('k' || i)::uuid, md5('u' || i)::uuid,
       CASE WHEN i %% 20 = 0 THEN 'failed' ELSE 'completed' END, 100, 1,
       'isnet-general-use', '{}'::jsonb,
       CASE WHEN i %% 20 = 0 THEN '' ELSE 'results/' || md5('k' || i)::uuid || '.png' END,
       CASE WHEN i %% 20 = 0 THEN 'Processing failed: bench' ELSE '' END,
       1.5 + (i %% 300) / 100.0, '{}'::jsonb, '',
       %(start)s::timestamptz + (i * %(step)s) * interval '1 second',
       %(start)s::timestamptz + (i * %(step)s + 4) * interval '1 second',
       %(start)s::timestamptz + (i * %(step)s + 1) * interval '1 second',
       %(start)s::timestamptz + (i * %(step)s + 4) * interval '1 second', NULL,
       1, '', false, ''
FROM generate_series(%(low)s, %(high)s) AS i
"""


# Every index but the primary keys (which the foreign keys of other tables need).
SECONDARY_INDEXES_SQL = """
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename IN ('removal_task', 'removal_upload')
  AND indexname NOT IN ('removal_task_pkey', 'removal_upload_pkey')
"""


def seed(n: int, *, reseed: bool) -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from accounts.models import User
    from removal.models import Task

    call_command("migrate", verbosity=0)
    user, _ = User.objects.get_or_create(username="bench", defaults={
        "email": "bench@example.com", "is_staff": True, "is_superuser": True})
    have = Task.objects.filter(upload__owner=user).count() if not reseed else -1
    if have == n:
        print(f"seed: {n:,} tasks already there (--reseed to rebuild)")
        return
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE removal_task, removal_upload CASCADE")
        cursor.execute("SET synchronous_commit = off")
        # Bulk-load the way PostgreSQL's docs advise: secondary indexes are dropped and built
        # once at the end (far faster than maintaining them row by row at 10M), and foreign-key
        # triggers are off for the load (the rows are consistent by construction).
        cursor.execute(SECONDARY_INDEXES_SQL)
        indexes = cursor.fetchall()
        try:
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            cursor.execute("SET session_replication_role = replica")
            year = 365 * 24 * 3600
            start = timezone.now() - timezone.timedelta(days=365)
            params = {"owner": user.pk, "start": start, "step": year / n}
            for low in range(1, n + 1, CHUNK):
                high = min(low + CHUNK - 1, n)
                cursor.execute(UPLOADS_SQL, {**params, "low": low, "high": high})
                cursor.execute(TASKS_SQL, {**params, "low": low, "high": high})
                print(f"seed: {high:,}/{n:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")
            cursor.execute("SET maintenance_work_mem = '1GB'")
            for _name, definition in indexes:
                cursor.execute(definition)
            print(f"seed: {len(indexes)} indexes built ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        cursor.execute("VACUUM ANALYZE removal_upload")
        cursor.execute("VACUUM ANALYZE removal_task")
    print(f"seed: {n:,} uploads + tasks in {time.perf_counter() - t0:.1f} s")


# --- Timing -------------------------------------------------------------------------------------


def cursor_at(depth: int, table: str) -> str:
    """The ``?cursor=`` of the page that starts ``depth`` rows down (DRF's encoding)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT created_at, id FROM {table} ORDER BY created_at DESC, id DESC "
                       "OFFSET %s LIMIT 1", [depth])
        created, pk = cursor.fetchone()
    query = urlencode({"p": f"{created.isoformat()}|{pk}"})
    return base64.b64encode(query.encode("ascii")).decode("ascii")


def timed(fn, repeats: int, *, warm: bool = True) -> tuple[float, list, object]:
    """Median seconds of ``fn()``, the queries and the result of its last run."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if warm:
        fn()
    samples = []
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            result = fn()
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples), ctx.captured_queries, result


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql)
        return "\n".join("      " + row[0] for row in cursor.fetchall())


def get(client, path: str, **headers):
    def call():
        response = client.get(path, **headers)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
        return response
    return call


def command(*args):
    from django.core.management import call_command

    def call():
        out = io.StringIO()
        call_command(*args, stdout=out, stderr=io.StringIO())
        return out.getvalue()
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000,
                        help="Tasks to seed (default 1M; 10M with --tasks 10000000).")
    parser.add_argument("--reseed", action="store_true", help="Seed again even if present.")
    parser.add_argument("--repeats", type=int, default=5, help="Runs per timing (median).")
    parser.add_argument("--no-plans", action="store_true", help="Skip the EXPLAIN output.")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    ensure_database(url)
    setup_django(url)
    seed(args.tasks, reseed=args.reseed)

    from django.test import Client
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import User
    from removal.models import Task

    user = User.objects.get(username="bench")
    api = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {AccessToken.for_user(user)}"}
    staff = Client()
    staff.force_login(user)
    some_task = Task.objects.filter(upload__owner=user).order_by("created_at").first()
    deep = args.tasks - 100  # the last page but one
    task_cursor, upload_cursor = cursor_at(deep, "removal_task"), cursor_at(deep, "removal_upload")
    name = f"photo_{args.tasks // 2 + 7}"  # one upload's name
    broad, broad_share = "photo_5", "11 %"  # 5, 5x, 5xx, ...: a term a tenth of the names share

    surfaces = [
        ("GET /api/v1/tasks (page 1)", get(api, "/api/v1/tasks", **auth)),
        (f"GET /api/v1/tasks (cursor at row {deep:,})",
         get(api, f"/api/v1/tasks?cursor={task_cursor}", **auth)),
        ("GET /api/v1/uploads (page 1)", get(api, "/api/v1/uploads", **auth)),
        (f"GET /api/v1/uploads (cursor at row {deep:,})",
         get(api, f"/api/v1/uploads?cursor={upload_cursor}", **auth)),
        ("GET /api/v1/tasks/{id}", get(api, f"/api/v1/tasks/{some_task.pk}", **auth)),
        ("admin task list", get(staff, "/admin/removal/task/")),
        ("admin task list, status=failed", get(staff, "/admin/removal/task/?status__exact=failed")),
        ("admin task search: id", get(staff, f"/admin/removal/task/?q={some_task.pk}")),
        (f"admin task search: file name '{name}'", get(staff, f"/admin/removal/task/?q={name}")),
        (f"admin task search: file name '{broad}' (~{broad_share} of rows)",
         get(staff, f"/admin/removal/task/?q={broad}")),
        ("admin task search: email", get(staff, "/admin/removal/task/?q=bench@example.com")),
        (f"admin upload search: '{name}'", get(staff, f"/admin/removal/upload/?q={name}")),
        ("admin overview (24 h)", get(staff, "/admin/removal/task/overview/")),
        ("GET /metrics", get(api, "/metrics", HTTP_AUTHORIZATION="Bearer bench-token")),
        ("reprocess --dry-run --status failed",
         command("reprocess", "--dry-run", "--status", "failed", "--no-progress")),
        ("reprocess --dry-run --all", command("reprocess", "--dry-run", "--all", "--no-progress")),
        ("purge --dry-run --older-than 30d",
         command("purge", "--dry-run", "--older-than", "30d", "--no-progress")),
    ]
    results = []
    for label, fn in surfaces:
        bulk = label.startswith(("reprocess", "purge"))
        seconds, queries, result = timed(fn, 1 if bulk else args.repeats, warm=not bulk)
        results.append((label, seconds, queries))
        print(f"{label:<58} {seconds * 1000:>9.1f} ms  ({len(queries)} queries)", flush=True)
        if bulk:
            print("      " + result.strip().splitlines()[-1])

    print(f"\nSummary at {args.tasks:,} tasks (median of {args.repeats} runs; commands once)")
    print("| surface | time |\n|---|---:|")
    for label, seconds, _ in results:
        print(f"| {label} | {seconds * 1000:.0f} ms |")

    if args.no_plans:
        return
    print("\nPlans of each surface's slowest query on the task and upload tables "
          "(EXPLAIN ANALYZE):")
    for label, _, queries in results:
        if not queries:
            continue
        hot = [q for q in queries if "removal_" in q["sql"]
               and q["sql"].lstrip().upper().startswith(("SELECT", "WITH"))]
        if not hot:
            continue
        slowest = max(hot, key=lambda q: float(q["time"]))
        print(f"\n== {label}: {float(slowest['time']) * 1000:.1f} ms\n   {slowest['sql'][:400]}")
        print(explain(slowest["sql"]))


if __name__ == "__main__":
    main()
