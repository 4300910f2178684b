"""``quickbg remove`` sending small files through ``POST /api/v1/batches`` (``--batch-size``),
against a live server, a real worker and the real model: killed mid-run (SIGKILL) and run
again, every file is done exactly once, and no batch is sent twice."""

from __future__ import annotations

import json
import sqlite3

import pytest

from removal.models import Batch, IdempotencyKey, Task
from tests.client.tools import (
    assert_cutout_png,
    fixture_names,
    json_lines,
    kill_mid_run,
    quickbg,
    small_jpeg,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def test_small_files_go_in_batches_and_a_killed_run_resumes_each_file_once(
        worker, live_server, user, api_key, tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    names = []
    for i, name in enumerate(fixture_names() + fixture_names()[:2]):
        rel = f"{'sub/' if i % 2 else ''}{i}-{name}"
        (photos / rel).write_bytes(small_jpeg(name, size=(160 + i, 120)))
        names.append(rel)
    out = tmp_path / "out"
    # Killed once the first batch is accepted, the run not done.
    kill_mid_run(live_server.url, api_key, "remove", str(photos), "-o", str(out), "-j", "2",
                 "--batch-size", "4", "--json",
                 when=lambda: Batch.objects.filter(owner=user).exists())
    assert 1 <= Task.objects.filter(upload__owner=user).count() <= len(names)

    again = quickbg(live_server.url, api_key, "remove", str(photos), "-o", str(out),
                    "-j", "2", "--batch-size", "4", "--json")
    assert again.returncode == 0, again.stderr.decode()[-3000:]
    lines = json_lines(again.stdout)
    assert sorted(line["status"] for line in lines) == ["done"] * len(names)
    for rel in names:
        assert_cutout_png(out / f"{rel.rsplit('.', 1)[0]}.png")

    # Every file exactly once: one task each, all of them members of batches; each request
    # that made something (a batch, or a file that went alone) has one key.
    tasks = Task.objects.filter(upload__owner=user)
    assert tasks.count() == len(names)
    assert sorted(tasks.values_list("upload__original_filename", flat=True)) == sorted(
        rel.rsplit("/", 1)[-1] for rel in names)
    in_batches = tasks.exclude(batch=None).count()
    assert in_batches >= 4
    batches = Batch.objects.filter(owner=user)
    assert all(batch.size <= 4 for batch in batches)
    assert IdempotencyKey.objects.filter(owner=user).count() == \
        batches.count() + tasks.filter(batch=None).count()
    # The manifest has each file's own task id, and the batches it was sent in.
    manifest = sqlite3.connect(out / ".quickbg-manifest.sqlite3")
    rows = dict(manifest.execute("SELECT input, task_id FROM files WHERE status = 'done'"))
    assert sorted(rows) == sorted(names)
    assert set(rows.values()) == {str(pk) for pk in tasks.values_list("pk", flat=True)}
    assert manifest.execute("SELECT count(*) FROM batches").fetchone()[0] >= batches.count()

    third = quickbg(live_server.url, api_key, "remove", str(photos), "-o", str(out), "--json")
    assert third.returncode == 0
    assert [line["status"] for line in json_lines(third.stdout)] == ["skipped"] * len(names)
    assert Task.objects.filter(upload__owner=user).count() == len(names)


def test_a_batch_whose_answer_was_lost_is_replayed_not_sent_again(worker, live_server, user,
                                                                  api_key, tmp_path):
    """As a run killed during its batch request leaves things: the server made the batch, the
    manifest holds the group and its key but no task ids. The next run re-sends that group
    with its key and gets the same tasks back."""
    from quickbg_client import Client, batch_idempotency_key, file_sha256, idempotency_key
    from quickbg_client.manifest import BatchMember, Entry, Manifest
    from quickbg_client.options import form_fields

    photos = tmp_path / "photos"
    photos.mkdir()
    names = [f"{i}-{name}" for i, name in enumerate(fixture_names()[:3])]
    for i, name in enumerate(names):
        (photos / name).write_bytes(small_jpeg(name.split("-", 1)[1], size=(150 + i, 110)))
    members = [BatchMember(str(photos / n), n, file_sha256(photos / n), n) for n in names]
    key = batch_idempotency_key([m.sha256 for m in members], {})
    out = tmp_path / "out"
    manifest = Manifest(out)
    options_key = json.dumps(form_fields({}), sort_keys=True)
    manifest.put_batch(key, members, [Entry(m.input, m.sha256, options_key, key, None,
                                            "uploading", None, None) for m in members])
    manifest.close()
    with Client(live_server.url, api_key) as client:  # the request whose answer was lost
        first = client.batch([(m.path, m.name) for m in members], idempotency_key=key)
    assert idempotency_key(members[0].sha256, {}) != key

    again = quickbg(live_server.url, api_key, "remove", str(photos), "-o", str(out), "--json")
    assert again.returncode == 0, again.stderr.decode()[-3000:]
    lines = json_lines(again.stdout)
    assert sorted((line["status"], line["task_id"]) for line in lines) == sorted(
        ("done", task_id) for task_id in first.task_ids)
    for name in names:
        assert_cutout_png(out / f"{name.rsplit('.', 1)[0]}.png")
    assert Batch.objects.filter(owner=user).count() == 1
    assert Task.objects.filter(upload__owner=user).count() == len(names)
    assert IdempotencyKey.objects.filter(owner=user).count() == 1
