"""The user list with links to each user's uploads and tasks.

``accounts`` registers the user admin and knows nothing of ``removal`` (the lower app); the
links point at removal's pages, so removal adds them here, on a subclass of accounts' admin.
"""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from accounts.admin import UserAdmin
from accounts.models import User


class UserWithWorkAdmin(UserAdmin):
    list_display = [*UserAdmin.list_display, "work_links"]

    @admin.display(description="work")
    def work_links(self, obj):
        query = urlencode({"owner": obj.pk})
        return format_html(
            '<a href="{}?{}">uploads</a> · <a href="{}?{}">tasks</a>',
            reverse("admin:removal_upload_changelist"), query,
            reverse("admin:removal_task_changelist"), query,
        )


admin.site.unregister(User)
admin.site.register(User, UserWithWorkAdmin)
