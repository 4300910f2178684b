"""The README's scale and lifecycle blocks, run verbatim: paging with curl, deleting with curl,
``manage.py purge``, the S3 lifecycle rule (against moto) and ``bench/scale.py`` on a small N."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from removal import storage
from removal.models import Task, Upload
from tests.factories import PASSWORD, make_task, make_upload
from tests.helpers import readme_block, subprocess_env, token_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def bash(script: str, env: dict, cwd=ROOT, timeout: float = 120) -> str:
    env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_readme_paging_and_delete_blocks_work(live_server, user, api):
    tasks = [make_task(owner=user) for _ in range(105)]  # two pages of 100
    upload = tasks[0].upload
    storage.write(upload.original_key, b"original")
    env = subprocess_env() | {
        "QUICKBG": live_server.url, "TOKEN": token_for(api, user), "UPLOAD": str(upload.pk),
        "QUICKBG_PASSWORD": PASSWORD,
    }

    listed = bash(readme_block("pages-start", "pages-end"), env).split()
    assert sorted(listed[0::2]) == sorted(str(t.pk) for t in tasks)

    out = bash(readme_block("delete-start", "delete-end"), env)
    assert "upload deleted: 204" in out and "account deleted: 204" in out
    assert not storage.exists(upload.original_key)
    assert not Upload.objects.exists() and not Task.objects.exists()
    assert not type(user).objects.filter(pk=user.pk).exists()


def test_readme_purge_block_works(user):
    from datetime import timedelta

    from django.utils import timezone

    upload = make_upload(owner=user)
    storage.write(upload.original_key, b"original")
    Upload.objects.filter(pk=upload.pk).update(created_at=timezone.now() - timedelta(days=31))
    env = subprocess_env() | {"QUICKBG_USER": user.username}
    out = bash(readme_block("purge-start", "purge-end"), env)
    assert "Dry run, nothing changed: would expire 1 upload(s)" in out
    assert "Done: expired 1 upload(s)" in out
    upload.refresh_from_db()
    assert upload.expired_at is not None and not storage.exists(upload.original_key)


def test_readme_lifecycle_rule_is_accepted_by_s3(s3):
    rules = json.loads(readme_block("lifecycle-start", "lifecycle-end", lang="json"))
    s3.put_bucket_lifecycle_configuration(Bucket="quickbg-test", LifecycleConfiguration=rules)
    stored = s3.get_bucket_lifecycle_configuration(Bucket="quickbg-test")["Rules"]
    assert {r["Filter"]["Prefix"]: r["Expiration"]["Days"] for r in stored} == {
        "originals/": 32, "results/": 32, "incoming/": 1}


def test_readme_bench_block_runs_on_a_small_seed():
    db = connection.settings_dict
    name = f"{db['NAME']}_scalebench"
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{name}"
    env = {k: v for k, v in subprocess_env().items() if k != "DATABASE_URL"}
    env |= {"BENCH_DB": url, "TASKS": "1500"}
    try:
        out = bash(readme_block("bench-start", "bench-end"), env, timeout=600)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert "seed: 1,500 uploads + tasks" in out
    assert "Summary at 1,500 tasks" in out
    assert "Dry run, nothing changed: 1500 would queue." in out  # reprocess --all
    assert "Index Scan" in out or "Index Only Scan" in out  # the plans are printed
