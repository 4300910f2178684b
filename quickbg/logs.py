"""Logging: the ``LOGGING`` configuration, and secrets never reach a log line.

Download URLs carry their own authorisation (a signed token in the path on local storage, an
``X-Amz-Signature`` on S3), and request logs would otherwise record them. ``RedactSecrets`` is
installed on every handler and rewrites the formatted message before it is written.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

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


def logging_config(*, level: str, console_format: str, metrics_file: Path) -> dict:
    """The ``LOGGING`` dict: every handler redacts; ``quickbg.metrics`` also goes to a file.

    ``console_format`` is ``json`` (one object per event, production) or ``plain``. One JSON line
    per finished task attempt goes to the ``quickbg.metrics`` logger, which writes to the console
    and appends to ``metrics_file``; ``WatchedFileHandler`` reopens the file when logrotate moves
    it, so rotation is logrotate's job (README, "Monitoring").
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "quickbg.logs.RedactSecrets"}},
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "timestamp", "levelname": "level", "name": "logger"},
            },
            "message": {"format": "%(message)s"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": console_format,
                        "filters": ["redact"]},
            "metrics_file": {"class": "logging.handlers.WatchedFileHandler",
                             "filename": str(metrics_file), "delay": True,
                             "encoding": "utf-8", "formatter": "message", "filters": ["redact"]},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "rq.worker": {"level": level},
            "quickbg.metrics": {"handlers": ["console", "metrics_file"], "level": "INFO",
                                "propagate": False},
            # django-axes: lockouts are warnings; every failed and successful sign-in is not news.
            "axes": {"level": "WARNING"},
            # Replaces Django's default handlers (which would print request lines unredacted).
            "django": {"handlers": ["console"], "level": level, "propagate": False},
            # Request lines of the development server: same handler, so the same redaction.
            "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }
