"""Users in the admin: Django's UserAdmin, kept fast on a big table, with links to their work."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from accounts.models import User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "is_staff", "is_active", "date_joined", "last_login",
                    "work_links"]
    list_filter = ["is_staff", "is_superuser", "is_active", "date_joined"]
    search_fields = ["username", "email", "first_name", "last_name"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    @admin.display(description="work")
    def work_links(self, obj):
        query = urlencode({"owner": obj.pk})
        return format_html(
            '<a href="{}?{}">uploads</a> · <a href="{}?{}">tasks</a>',
            reverse("admin:removal_upload_changelist"), query,
            reverse("admin:removal_task_changelist"), query,
        )
