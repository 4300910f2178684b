"""quickbg.logs: signed URLs, tokens and requests are redacted from every log handler."""

from __future__ import annotations

import logging

import pytest

from quickbg.logs import RedactSecrets

pytestmark = pytest.mark.django_db


def test_signed_urls_and_tokens_are_redacted_from_logs():
    record = logging.LogRecord(
        "django.server", logging.INFO, __file__, 1,
        '"GET %s HTTP/1.1" 200 -- %s',
        ("/api/v1/files/eyJrIjoicmVzdWx0cy9hLnBuZyJ9:1vN:abc",
         "https://s3/x.png?X-Amz-Credential=AKIA/2026&X-Amz-Signature=deadbeef "
         "Authorization: Bearer eyJ.abc.def"),
        None,
    )
    RedactSecrets().filter(record)
    message = record.getMessage()
    assert "eyJrIjoicmVzdWx0cy9hLnBuZyJ9" not in message and "deadbeef" not in message
    assert "AKIA" not in message and "eyJ.abc.def" not in message
    assert message.count("<redacted>") == 4


def test_request_attached_to_a_log_record_is_redacted():
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s",
                               ("/api/v1/files/SECRETTOKEN",), None)
    record.request = "<WSGIRequest: GET '/api/v1/files/SECRETTOKEN'>"
    RedactSecrets().filter(record)
    assert "SECRETTOKEN" not in record.getMessage() and "SECRETTOKEN" not in record.request


def test_every_log_handler_redacts(settings):
    for handler in settings.LOGGING["handlers"].values():
        assert "redact" in handler.get("filters", [])
