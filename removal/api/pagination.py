"""Cursor pagination on ``(created_at, id)``, newest first, for ``GET tasks`` and ``GET uploads``.

Why not page numbers: ``?page=20000`` is an ``OFFSET`` that reads and throws away every row
before the page (2.3 s at 1M tasks); a cursor is a ``WHERE (created_at, id) < (…)`` that starts
at the right index entry, so every page costs the same at any depth.

DRF's ``CursorPagination`` keys its cursor on the first ordering field alone and adds an offset
for ties. ``KeysetPagination`` keys it on the pair ``(created_at, id)`` instead, which is unique,
so the offset is always 0 and two rows created in the same microsecond are never skipped or
repeated. Its links, cursor encoding (opaque, base64) and ``?page_size=`` are DRF's.

Counts: a cursor page has no ``count`` (counting a million rows costs what the page saves).

The old ``?page=N`` is answered with a 400 that points to ``cursor``: silently ignoring it would
send an old client round in circles on page 1.
"""

from __future__ import annotations

import uuid

from django.db.models import Q
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound as DRFNotFound
from rest_framework.pagination import CursorPagination, PageNumberPagination

from removal.errors import InvalidInput

PAGE_REMOVED = (
    "?page= is not supported: lists are paginated by cursor. Follow the `next` link of the "
    "previous response (it carries ?cursor=...); ?page_size= still works."
)


class KeysetPagination(CursorPagination):
    """``?cursor=`` from the ``next``/``previous`` links; ``?page_size=N`` (up to 100)."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 100

    def paginate_queryset(self, queryset, request, view=None):
        if "page" in request.query_params:
            raise InvalidInput(PAGE_REMOVED)
        # DRF's algorithm (positions, links, reversal), with the position filter on the pair.
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, queryset, view)
        self.cursor = self.decode_cursor(request)
        reverse, position = (False, None) if self.cursor is None else self.cursor[1:]
        if reverse:
            queryset = queryset.order_by("created_at", "id")
        else:
            queryset = queryset.order_by("-created_at", "-id")
        if position is not None:
            queryset = queryset.filter(_beyond(position, older=not reverse))

        results = list(queryset[: self.page_size + 1])
        self.page = results[: self.page_size]
        following = (self._get_position_from_instance(results[-1], self.ordering)
                     if len(results) > len(self.page) else None)
        if reverse:
            self.page.reverse()
            self.has_next, self.has_previous = position is not None, following is not None
            self.next_position, self.previous_position = position, following
        else:
            self.has_next, self.has_previous = following is not None, position is not None
            self.next_position, self.previous_position = following, position
        if (self.has_previous or self.has_next) and self.template is not None:
            self.display_page_controls = True
        return self.page

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            try:
                _split(cursor.position)
            except ValueError:
                raise DRFNotFound(self.invalid_cursor_message) from None
        return cursor

    def _get_position_from_instance(self, instance, ordering):
        return f"{instance.created_at.isoformat()}|{instance.pk}"

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        parameters.append({
            "name": "page",
            "required": False,
            "in": "query",
            "deprecated": True,
            "description": "Not supported any more: answered with 400. Use `cursor` (follow "
                           "the `next` link).",
            "schema": {"type": "integer"},
        })
        return parameters


def _split(position: str):
    created, _, pk = position.partition("|")
    moment = parse_datetime(created)
    if moment is None:
        raise ValueError(position)
    return moment, uuid.UUID(pk)


def _beyond(position: str, *, older: bool) -> Q:
    """Rows after ``position`` in the walk: ``(created_at, id) < (c, i)`` (or ``>``).

    Written as ``created_at <= c AND (created_at < c OR id < i)``: the first term is the index
    condition that starts the scan at the cursor, the rest drops the rows of the same instant
    already shown.
    """
    created, pk = _split(position)
    if older:
        return Q(created_at__lte=created) & (Q(created_at__lt=created) | Q(id__lt=pk))
    return Q(created_at__gte=created) & (Q(created_at__gt=created) | Q(id__gt=pk))


class BatchMemberPagination(PageNumberPagination):
    """A batch's members, in the order they were sent: ``?page=`` and ``?page_size=``.

    Page numbers (and an exact ``count``) here, unlike the top-level lists: a batch holds at most
    ``QUICKBG_MAX_BATCH_FILES`` members, so the offset and the count stay cheap at any size.
    """

    page_size_query_param = "page_size"
    max_page_size = 100
