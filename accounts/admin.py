"""Users in the admin: Django's UserAdmin, kept fast on a big table (``removal.admin.users``
adds the links to each user's uploads and tasks: ``accounts`` knows nothing of ``removal``)."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from accounts.models import User, UserAPIKey
from accounts.services import api_key_revoke

# The library registers its own (unused) APIKey model; QuickBG's keys are UserAPIKey below.
admin.site.unregister(APIKey)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "is_staff", "is_active", "date_joined", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active", "date_joined"]
    search_fields = ["username", "email", "first_name", "last_name"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER


@admin.register(UserAPIKey)
class UserAPIKeyAdmin(APIKeyModelAdmin):
    """Every user's keys (never a secret: only the prefix and hash are stored). Staff revoke a
    key with the action or the "revoked" box; revoking cannot be undone."""

    list_display = ["prefix", "name", "user", "created", "expiry_date", "last_used_at",
                    "_has_expired", "revoked"]
    list_filter = ["revoked", "created", "expiry_date"]
    search_fields = ["name", "prefix", "user__username", "user__email"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    show_full_result_count = False
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "public_id", "last_used_at"]

    @admin.action(description="Revoke the selected API keys")
    def revoke_keys(self, request, queryset):
        revoked = 0
        for key in queryset.filter(revoked=False):
            api_key_revoke(key=key)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).")
