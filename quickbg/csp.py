"""The Content-Security-Policy (django-csp 4) with a few per-path additions.

``CONTENT_SECURITY_POLICY`` (built in quickbg/csp_policy.py) is the policy of every response.
A few pages need a little more, listed in ``QUICKBG_CSP_PATH_UPDATES`` (path prefix ->
directives added), applied here unless the view set its own update:

- ``/admin/``: inline ``style`` attributes (Django's admin and the thumbnails use them) and the
  one inline script of django-rq's job lists, allowed by its sha256 hash (not by 'unsafe-inline').
- ``/api/v1/docs`` and ``/api/v1/redoc``: Swagger UI and ReDoc (served from this origin by
  drf-spectacular-sidecar) set inline styles at run time, and ReDoc searches in a blob: worker.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings


class PathCSPMiddleware(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only=report_only)
        if report_only or parts.update is not None:
            return parts
        for prefix, update in getattr(settings, "QUICKBG_CSP_PATH_UPDATES", {}).items():
            if request.path_info.startswith(prefix):
                return PolicyParts(parts.config, update, parts.replace, parts.nonce)
        return parts
