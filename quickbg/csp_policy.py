"""The Content-Security-Policy that ``settings.CONTENT_SECURITY_POLICY`` is built from.

Plain data (no Django import), so the settings module can build it; ``quickbg.csp`` is the
middleware that applies it. The policy of every response: scripts, styles, fonts and connections
only from this origin, no inline script, no plugins, no framing. Images may also come from the S3
endpoint (result previews) and any origin listed in ``QUICKBG_CSP_IMG_SRC``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SELF, NONE = "'self'", "'none'"
# django-rq's job lists run one fixed inline script (select-all checkboxes): allowed by hash.
RQ_ACTIONS_SCRIPT = "'sha256-1kZe1KRxelr3ptMPsod17Z6BDvbtm4WcufgsZGvsErM='"
# Directives added per path prefix (``QUICKBG_CSP_PATH_UPDATES``; quickbg/csp.py says why).
PATH_UPDATES = {
    "/admin/": {"style-src": ["'unsafe-inline'"], "script-src": [RQ_ACTIONS_SCRIPT]},
    "/api/v1/docs": {"style-src": ["'unsafe-inline'"]},
    "/api/v1/redoc": {"style-src": ["'unsafe-inline'"], "worker-src": [SELF, "blob:"]},
}


def policy(*, s3_endpoint: str | None, extra_img_src: list[str]) -> dict:
    """django-csp 4's ``CONTENT_SECURITY_POLICY``.

    ``s3_endpoint``: None when files are stored locally; the S3 endpoint URL otherwise (empty
    for AWS itself, whose buckets are under ``*.amazonaws.com``).
    """
    img_src = [SELF, "data:", "blob:"]
    if s3_endpoint is not None:
        endpoint = urlsplit(s3_endpoint)
        img_src.append(f"{endpoint.scheme}://{endpoint.netloc}" if endpoint.netloc
                       else "https://*.amazonaws.com")
    return {
        "DIRECTIVES": {
            "default-src": [SELF],
            "script-src": [SELF],
            "style-src": [SELF],
            "img-src": img_src + list(extra_img_src),
            "font-src": [SELF],
            "connect-src": [SELF],
            "object-src": [NONE],
            "base-uri": [NONE],
            "form-action": [SELF],
            "frame-ancestors": [NONE],
        },
    }
