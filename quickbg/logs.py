"""Logging helpers: secrets never reach a log line.

Download URLs carry their own authorisation (a signed token in the path on local storage, an
``X-Amz-Signature`` on S3), and request logs would otherwise record them. ``RedactSecrets`` is
installed on every handler and rewrites the formatted message before it is written.
"""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    (re.compile(r"(/api/v1/files/)[^\s\"'?]+"), r"\1<redacted>"),
    (re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+", re.I),
     r"\1<redacted>"),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1<redacted>"),
    (re.compile(r"(\"(?:access|refresh)\"\s*:\s*\")[^\"]+"), r"\1<redacted>"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        # Django attaches the request to request-log records; the JSON formatter prints it.
        if hasattr(record, "request"):
            record.request = redact(str(record.request))
        return True
