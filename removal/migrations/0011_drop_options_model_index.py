"""Drop the index on ``options ->> 'model'`` (from 0003): since 0005 the model is its own column.

Nothing reads ``options ->> 'model'`` any more, so the index only cost a write per task. The model
filter and ``reprocess --model`` read ``Task.model``; with a handful of models, a plain index on it
would not be chosen over the status and date indexes, so none replaces it.
"""

from django.db import migrations

NAME = "removal_task_options_model_idx"
RECREATE = {
    "postgresql": f"CREATE INDEX IF NOT EXISTS {NAME} ON removal_task ((options ->> 'model'))",
    "sqlite": f"CREATE INDEX IF NOT EXISTS {NAME} ON removal_task (json_extract(options, '$.model'))",
}


def drop(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")


def recreate(apps, schema_editor):
    sql = RECREATE.get(schema_editor.connection.vendor)
    if sql:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("removal", "0010_batch_batches")]

    operations = [migrations.RunPython(drop, recreate)]
