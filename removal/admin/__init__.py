"""Staff views of uploads and tasks: fast changelists, thumbnails, metrics, retry and reprocess.

Tasks and uploads are read-only here: every change goes through ``removal.services`` (the two
actions below), never through a model form. The changelists stay fast with 100 000+ tasks:
joins instead of per-row queries (``list_select_related``), no second full ``COUNT``
(``show_full_result_count = False``), an estimated count for the unfiltered list, filters that
need no query to render, and indexes for the filters (migration ``0003_admin_indexes``).

One module per entity: ``common`` (the read-only base, filters, thumbnails, search),
``uploads``, ``tasks``, ``batches``, ``webhooks`` and ``users`` (accounts' user list, with links
to each user's uploads and tasks). Importing them registers their admins.
"""

from removal.admin import batches, common, tasks, uploads, users, webhooks  # noqa: F401 - registers
from removal.admin.common import EstimatedCountPaginator

__all__ = ["EstimatedCountPaginator"]
