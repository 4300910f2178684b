"""The web page at ``/``: one template; the page's JavaScript talks to the REST API.

The page holds no server-side session. It signs in through ``POST /api/v1/auth/token`` and keeps
the JWT pair in the tab's ``sessionStorage``, so the browser uses exactly the API that scripts use
and shows the API's error messages as they are.
"""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_safe


@require_safe
def index(request):
    context = {
        "max_upload_mb": f"{settings.QUICKBG_MAX_UPLOAD_MB:g}",
        "max_dimension": settings.QUICKBG_MAX_DIMENSION,
    }
    return render(request, "web/index.html", context)


urlpatterns = [path("", index, name="home")]
