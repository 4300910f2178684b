"""What every QuickBG admin page shares: the read-only base, filters, thumbnails, search."""

from __future__ import annotations

import json
import uuid

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from removal import modelstore, selectors, storage
from removal.models import Task, Upload
from removal.pipeline.validate import SUPPORTED_FORMATS

Status = Task.Status

# The app list is on the admin's home page; without the navigation sidebar the changelists get
# its ~300 px, so the task list with its filters is readable at 1280 px.
admin.site.enable_nav_sidebar = False


class EstimatedCountPaginator(Paginator):
    """Counts that stay cheap at 10M rows (the admin shows a count on every changelist).

    - Unfiltered: PostgreSQL's row estimate (``pg_class.reltuples``) instead of ``COUNT(*)``.
    - Filtered or searched: counted exactly up to ``EXACT_UP_TO`` rows (a ``LIMIT``-ed count);
      past that, the planner's estimate for the filtered query (``EXPLAIN``), so a search that
      matches a million rows does not count them.
    A table PostgreSQL has not analysed yet, and other databases, are counted exactly.
    """

    EXACT_UP_TO = 1_000

    @cached_property
    def count(self):
        query = getattr(self.object_list, "query", None)
        if connection.vendor != "postgresql" or query is None:
            return super().count
        if not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                    [self.object_list.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] >= 10_000:
                return row[0]
            return super().count
        capped = self.object_list.order_by().values("pk")[: self.EXACT_UP_TO + 1].count()
        if capped <= self.EXACT_UP_TO:
            return capped
        sql, params = self.object_list.order_by().query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return max(capped, int(plan[0]["Plan"]["Plan Rows"]))


class ModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        return [(name, name) for name in sorted(modelstore.MODELS)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(model=self.value())
        return queryset


class FormatFilter(admin.SimpleListFilter):
    """The supported formats, listed without a ``SELECT DISTINCT`` over every upload."""

    title = "format"
    parameter_name = "format"

    def lookups(self, request, model_admin):
        return [(name, name) for name in SUPPORTED_FORMATS]

    def queryset(self, request, queryset):
        return queryset.filter(format=self.value()) if self.value() else queryset


class OwnerFilter(admin.SimpleListFilter):
    """A text box (user id, username or email) instead of a list of every user."""

    title = "owner"
    parameter_name = "owner"
    template = "admin/removal/input_filter.html"
    owner_path = "upload__owner"

    def lookups(self, request, model_admin):
        return [("", "")]  # Django only shows a filter that has lookups; the template ignores it.

    def choices(self, changelist):
        # The template needs the other query parameters to keep them in the form.
        yield {
            "value": self.value() or "",
            "hidden": [
                (k, v) for k, values in changelist.filter_params.items()
                if k != self.parameter_name for v in values
            ],
        }

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        if not value:
            return queryset
        return queryset.filter(selectors.owner_match(value, owner_path=self.owner_path))


class UploadOwnerFilter(OwnerFilter):
    owner_path = "owner"


class IdFilter(admin.SimpleListFilter):
    """``?<parameter_name>=<uuid>``: the rows whose ``field`` is that id; hidden, reached by
    links. Made by ``id_filter``."""

    template = "admin/removal/hidden_filter.html"
    field = ""

    def lookups(self, request, model_admin):
        return [("", "")]

    def queryset(self, request, queryset):
        found = _as_uuid(self.value() or "")
        return queryset.filter(**{self.field: found}) if found else queryset


def id_filter(name: str, *, doc: str) -> type[IdFilter]:
    """The hidden filter ``?<name>=<uuid>`` over the foreign key ``<name>_id``."""
    return type(f"{name.title()}Filter", (IdFilter,), {
        "__doc__": f"``?{name}=<uuid>``: {doc}.", "__module__": __name__,
        "title": name, "parameter_name": name, "field": f"{name}_id"})


def _as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


def _small_thumbnail(task: Task):
    """A 48 px thumbnail for lists: the result once there is one, else the original; none
    once retention deleted the images."""
    if task.upload.expired_at or task.status == Status.EXPIRED:
        return "—"
    if task.status == Status.COMPLETED and task.result_key:
        url = storage.download_url(
            task.result_key, request=None, content_type=storage.content_type_of(task.result_key))
    else:
        url = _original_url(task.upload)
    return format_html('<img class="quickbg-thumb" src="{}" alt="" loading="lazy">', url)


def _badge(status: str):
    return format_html('<span class="quickbg-badge {0}">{0}</span>', status)


def _thumbnail(url: str, *, checkerboard: bool = False):
    style = "max-width:320px;max-height:320px;display:block;"
    if checkerboard:
        style += (
            "background-color:#fff;"
            "background-image:linear-gradient(45deg,#ccc 25%,transparent 25%),"
            "linear-gradient(-45deg,#ccc 25%,transparent 25%),"
            "linear-gradient(45deg,transparent 75%,#ccc 75%),"
            "linear-gradient(-45deg,transparent 75%,#ccc 75%);"
            "background-size:16px 16px;"
            "background-position:0 0,0 8px,8px -8px,-8px 0;"
        )
    return format_html(
        '<a href="{0}" target="_blank" rel="noopener"><img src="{0}" alt="" style="{1}"></a>',
        url, style,
    )


def _original_url(upload: Upload) -> str:
    """Served as the detected format, whatever the stored name (older rows kept the client's)."""
    return storage.download_url(upload.original_key, request=None,
                                content_type=storage.content_type_for(upload.format))


MIN_FILENAME_SEARCH = 3
# A file-name search lists at most this many matching uploads (and their tasks).
FILENAME_MATCHES_SHOWN = 500
SEARCH_HELP = ("A task or upload id (exact), an owner's email (exact, contains @), or at least "
               f"{MIN_FILENAME_SEARCH} characters of a file name (up to "
               f"{FILENAME_MATCHES_SHOWN:,} matching uploads are listed).")


def _search(request, model_admin, queryset, term: str, *, id_match, owner_path: str,
            upload_path: str):
    """The admin search, each kind on its own index (≤ 300 ms at 10M tasks, see the bench).

    Django's default ORs ``icontains`` over every search field, across joins, which no index
    serves. Here: an id is an exact match on the primary key; a term with ``@`` is an owner's
    email, exact (case-insensitive); anything else of at least ``MIN_FILENAME_SEARCH``
    characters is a file-name substring, served by the trigram index (migration 0009). A
    shorter term matches nothing (a trigram index needs three characters).

    A file-name search is resolved to upload ids once (``FILENAME_MATCHES_SHOWN`` at most), so
    the trigram index is read once rather than by both the count and the page query, and a term
    that a million names share costs no more than a precise one. When more match, the page says
    so and asks for a longer term.
    """
    term = term.strip()
    if not term:
        return queryset
    found = _as_uuid(term)
    if found is not None:
        return queryset.filter(id_match(found))
    if "@" in term:
        # Resolved to ids first, so the planner sees the owner's real share of the rows.
        return queryset.filter(**{f"{owner_path}_id__in": selectors.user_ids_by_email(term)})
    if len(term) < MIN_FILENAME_SEARCH:
        return queryset.none()
    upload_ids = selectors.upload_ids_by_filename(term, limit=FILENAME_MATCHES_SHOWN + 1)
    if len(upload_ids) > FILENAME_MATCHES_SHOWN:
        upload_ids = upload_ids[:FILENAME_MATCHES_SHOWN]
        model_admin.message_user(
            request, f"More than {FILENAME_MATCHES_SHOWN:,} uploads have “{term}” in their file "
            f"name; only {FILENAME_MATCHES_SHOWN:,} of them are listed. Search for a longer "
            "part of the name, or an id or email.", messages.WARNING)
    matches = queryset.filter(**{f"{upload_path}__in": upload_ids})
    # The same rows again, named by their creation times. Without it PostgreSQL orders the page
    # by walking the created_at index backwards and testing each row against the id list, on
    # the estimate that matches are spread evenly; the ids the trigram index gives first are the
    # oldest rows, so the walk crossed nearly the whole table (0.9 s at 1M tasks). With it the
    # planner probes the created_at index once per match instead (25 ms).
    created = set(matches.order_by().values_list("created_at", flat=True))
    return matches.filter(created_at__in=created)


def _expired_note(upload):
    when = upload.expired_at.strftime("%Y-%m-%d %H:%M UTC") if upload.expired_at else "—"
    return format_html("<em>Deleted by retention on {}</em>", when)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows change only through services; staff see them, and act through admin actions."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice is too slow on big tables
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # The changelist (obj is None) keeps change permission so the actions work; the detail
        # page is view-only.
        return obj is None and super().has_change_permission(request, obj)



def _flatten(data: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, prefix=f"{name}."))
        elif isinstance(value, float):
            rows.append((name, f"{value:.4g}"))
        else:
            rows.append((name, str(value)))
    return rows


def _table(rows: list[tuple[str, str]]):
    if not rows:
        return "—"
    body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
    return format_html('<table class="quickbg-kv">{}</table>', body)


# --- Webhook deliveries (one row per attempt) ---------------------------------------------------
