"""Scale and data lifecycle (issue 15).

- ``Task.status`` gains ``expired`` and ``Upload`` gains ``expired_at`` (retention keeps the rows,
  marked, after deleting the stored images);
- ``Task.reprocess_of``: the task a reprocess task was made from (resumable ``reprocess``);
- ``(created_at, id)`` indexes for the API's cursor pagination, and ``(upload, created_at)`` for
  reprocess's set-based skip rules;
- on PostgreSQL, a trigram GIN index on ``UPPER(Upload.original_filename)`` (``pg_trgm``) so the
  admin's file-name search (Django's ``icontains``: ``UPPER(col) LIKE UPPER('%term%')``) does not
  scan every upload.
"""

from django.db import migrations, models

TRIGRAM = "removal_upload_filename_trgm"


def create_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {TRIGRAM} ON removal_upload "
        "USING gin ((UPPER(original_filename::text)) gin_trgm_ops)"
    )


def drop_trigram_index(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX IF EXISTS {TRIGRAM}")


class Migration(migrations.Migration):

    dependencies = [
        ("removal", "0008_hooks_webhooks_reuse"),
    ]

    operations = [
        migrations.AddField(
            model_name="upload",
            name="expired_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="task",
            name="reprocess_of",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=models.deletion.SET_NULL,
                related_name="reprocessed_by", to="removal.task",
            ),
        ),
        migrations.AlterField(
            model_name="task",
            name="status",
            field=models.CharField(
                choices=[("queued", "Queued"), ("processing", "Processing"),
                         ("completed", "Completed"), ("failed", "Failed"),
                         ("expired", "Expired")],
                db_index=True, default="queued", max_length=12,
            ),
        ),
        migrations.AddIndex(
            model_name="upload",
            index=models.Index(fields=["owner", "created_at", "id"],
                               name="removal_upl_owner_cursor"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(fields=["created_at", "id"], name="removal_task_cursor"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(fields=["upload", "created_at"],
                               name="removal_task_upload_created"),
        ),
        migrations.RunPython(create_trigram_index, drop_trigram_index),
    ]
