from django.contrib import admin

from removal.models import Task, Upload


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "original_filename", "format", "width", "height", "created_at"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    show_full_result_count = False


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["id", "upload", "status", "progress", "attempts", "processing_time",
                    "created_at"]
    list_filter = ["status"]
    list_select_related = ["upload"]
    raw_id_fields = ["upload"]
    show_full_result_count = False
