"""Task.claim_token (one UUID per claim), Task.lifetime_attempts (never reset), and
DirectUpload.filename (the client's name, no longer part of the issued key)."""

from django.db import migrations, models
from django.db.models import F


def copy_attempts(apps, schema_editor):
    Task = apps.get_model("removal", "Task")
    Task.objects.update(lifetime_attempts=F("attempts"))


class Migration(migrations.Migration):

    dependencies = [("removal", "0005_task_model")]

    operations = [
        migrations.AddField(
            model_name="task", name="lifetime_attempts",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="task", name="claim_token",
            field=models.UUIDField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="directupload", name="filename",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.RunPython(copy_attempts, migrations.RunPython.noop),
    ]
