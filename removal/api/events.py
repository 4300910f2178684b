"""The task as webhook events carry it: ``GET /api/v1/tasks/{id}``'s own representation.

It is the API's serializer on purpose, so an event's ``data`` cannot drift from the endpoint's
fields; links are made absolute (``QUICKBG_PUBLIC_URL``) and signed afresh. It lives in the API
layer, and ``RemovalConfig.ready`` hands it to ``services.webhooks``, so that services import
nothing from DRF.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from removal.api.serializers import TaskSerializer
from removal.models import Task


def _absolute(url):
    if isinstance(url, str) and url.startswith("/"):
        return settings.QUICKBG_PUBLIC_URL + url
    return url


def task_payload(task: Task) -> dict:
    data = dict(TaskSerializer(task).data)
    for name in ("result_url", "presigned_url"):
        data[name] = _absolute(data.get(name))
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))
