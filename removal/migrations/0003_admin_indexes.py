"""Indexes for the admin changelist, the overview page and ``/metrics`` (index changes only).

- ``(status, created_at DESC)``: the task list filtered by status, newest first, and
  ``reprocess --status``.
- the ``model`` key of ``options``: the task list's model filter and ``reprocess --model``.

They are created with SQL (state untouched) so the model's ``Meta`` does not have to change;
``IF NOT EXISTS`` makes the migration safe to run on a database where they were added by hand.
"""

from django.db import migrations

INDEXES = {
    "removal_task_status_created_idx": {
        "postgresql": "ON removal_task (status, created_at DESC)",
        "sqlite": "ON removal_task (status, created_at DESC)",
    },
    "removal_task_options_model_idx": {
        "postgresql": "ON removal_task ((options ->> 'model'))",
        "sqlite": "ON removal_task (json_extract(options, '$.model'))",
    },
}


def create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for name, by_vendor in INDEXES.items():
        if vendor in by_vendor:
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} {by_vendor[vendor]}")


def drop(apps, schema_editor):
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("removal", "0002_idempotency_key")]

    operations = [migrations.RunPython(create, drop)]
