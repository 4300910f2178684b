"""Task.model: the model choice gets its own column; ``options`` keeps only output options."""

from django.conf import settings
from django.db import migrations, models


def split_model_out(apps, schema_editor):
    default = settings.QUICKBG_MODEL
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "UPDATE removal_task SET model = COALESCE(NULLIF(options->>'model', ''), %s), "
            "options = options - 'model'",
            [default],
        )
        return
    Task = apps.get_model("removal", "Task")
    for task in Task.objects.iterator():
        task.model = task.options.pop("model", None) or default
        task.save(update_fields=["model", "options"])


def merge_model_back(apps, schema_editor):
    Task = apps.get_model("removal", "Task")
    for task in Task.objects.exclude(model="").iterator():
        task.options = {**task.options, "model": task.model}
        task.save(update_fields=["options"])


class Migration(migrations.Migration):

    dependencies = [
        ("removal", "0004_direct_upload"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="model",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(split_model_out, merge_model_back),
    ]
