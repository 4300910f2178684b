"""Fuzzing (issue 6, section 7): hostile input gets a clean 4xx or a clean reject, never a crash.

* schemathesis generates requests from the served OpenAPI schema (``/api/v1/schema``) and sends
  them, with a real JWT, through the Django WSGI application in this process. Every response
  must be below 500.
* hypothesis mutates real images (``tests/mutations.py``: bit flips, truncation, edits of the
  header bytes) and sends them to ``POST /api/v1/uploads``: each is either accepted (202) or
  refused with a clean 4xx and a message; nothing else may happen. The same images against the
  validator alone: ``tests/pipeline/test_validate_fuzz.py``.

Both are bounded (a fixed number of examples, no deadline) so the file runs in CI in about a
minute.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.wsgi import get_wsgi_application
from django.test import override_settings
from hypothesis import HealthCheck, event, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from werkzeug.test import Client

from removal.models import Task, Upload
from tests.factories import PASSWORD, make_task, make_user
from tests.mutations import mutated_images

# --- schemathesis: the whole API, authenticated ------------------------------------------------

API_EXAMPLES = 25


WSGI_APP = get_wsgi_application()
# Loaded once, at collection, from the schema the application serves. (Not through
# ``schemathesis.pytest.from_fixture``: its lazy loader uses ``Item._nodeid``, gone in pytest 9.)
with override_settings(ALLOWED_HOSTS=["localhost"]):
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema", WSGI_APP)


@pytest.fixture
def bearer(transactional_db, settings) -> dict[str, str]:
    """A user with one task of their own (so lists serialize a row), and their access token.

    ``transactional_db``: the WSGI handler closes the connection after each request like a
    server does, which a test wrapped in a transaction would not survive; here every request
    commits for real and the on-commit enqueue runs."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    user = make_user()
    make_task(owner=user)
    response = Client(WSGI_APP).post(
        "/api/v1/auth/token", json={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.get_json()['access']}"}


@pytest.fixture
def loopback_only(monkeypatch):
    """URLs the fuzzer invents (``image_url``, ``webhook_url``) never leave the machine: host
    names are not looked up (numeric addresses only), and removal.fetch opens no connection
    to a non-loopback address (it already refuses loopback ones that are not allowlisted)."""
    import ipaddress
    import socket

    import httpcore

    from removal import fetch

    real_getaddrinfo = socket.getaddrinfo

    def numeric_only(host, port, family=0, type=0, proto=0, flags=0):
        return real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    real_connect = fetch._PinnedBackend.connect_tcp

    def loopback_connect(self, host, port, *args, **kwargs):
        if not ipaddress.ip_address(self._ip).is_loopback:
            raise httpcore.ConnectError("tests reach loopback addresses only")
        return real_connect(self, host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)
    monkeypatch.setattr(fetch._PinnedBackend, "connect_tcp", loopback_connect)


@schema.parametrize()
@settings(max_examples=API_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_api_never_answers_5xx(case, bearer, loopback_only):
    # A 5xx, a response body off its documented schema or a wrong content type fail. Not
    # checked: status_code_conformance (the schema documents no 4xx at all) and
    # negative_data_rejection (``page_size=null`` is ignored rather than refused).
    case.call_and_validate(
        headers=bearer,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )


def test_schema_documents_the_upload_body():
    """The fuzzer sends only what the schema describes: if the upload's multipart body is not
    documented, no generated request ever carries a file."""
    operation = schema.raw_schema["paths"]["/api/v1/uploads"]["post"]
    assert "202" in operation["responses"], f"documented: {sorted(operation['responses'])}"
    body = operation.get("requestBody", {}).get("content", {})
    assert "multipart/form-data" in body, "POST /api/v1/uploads documents no multipart body"
    ref = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    properties = schema.raw_schema["components"]["schemas"][ref]["properties"]
    assert properties["file"]["format"] == "binary"


# --- hypothesis: mutated real images through the upload API ------------------------------------


@pytest.mark.filterwarnings("ignore:.*:UserWarning:PIL")
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sample=mutated_images())
def test_mutated_uploads_get_202_or_a_clean_4xx(db, client_for, sample):
    name, data = sample
    user = make_user()  # one per example: the per-user cap on queued tasks is not under test
    client = client_for(user)
    before = Upload.objects.count()
    response = client.post(
        "/api/v1/uploads", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )
    event(f"HTTP {response.status_code}")
    if response.status_code == 202:
        assert Task.objects.filter(pk=response.json()["task_id"], upload__owner=user).exists()
        assert Upload.objects.count() == before + 1
    else:
        assert response.status_code in (400, 413, 415), (response.status_code, response.content)
        assert response.json()["detail"].strip()
        assert Upload.objects.count() == before
