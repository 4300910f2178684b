"""The only place that creates or changes rows, one module per entity.

- ``uploads``: validate and store an original, create its Upload and first Task; direct uploads.
- ``tasks``: queue, claim, progress, complete, fail, recover, retry and reprocess a Task.

The API, the admin, the management commands and the jobs all call these functions. They raise
``removal.errors`` and know nothing of HTTP. Status moves only by guarded updates
(``filter(pk=..., status=expected).update(...)``) whose row count says whether the move happened;
no row lock is ever held across model inference. Shared reads live in ``removal.selectors``.
"""
