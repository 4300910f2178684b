import sys

import pytest

from accounts.models import UserAPIKey
from tests.client.tools import CLIENT_DIR
from tests.live import worker_process


@pytest.fixture(scope="module")
def worker(django_db_setup):
    """One real worker (the real model) for a module's tests: loading the model once."""
    with worker_process("client-tests") as proc:
        yield proc


@pytest.fixture
def api_key(user) -> str:
    return UserAPIKey.objects.create_key(user=user, name="quickbg client")[1]


# The library tests import quickbg_client from the checkout (it is never installed into the
# shared venv; tests/client/test_install.py proves the pip install).
sys.path.insert(0, str(CLIENT_DIR))
