import pytest

from accounts.models import UserAPIKey
from tests.live import worker_process


@pytest.fixture(scope="module")
def worker(django_db_setup):
    """One real worker (the real model) for a module's tests: loading the model once."""
    with worker_process("client-tests") as proc:
        yield proc


@pytest.fixture
def api_key(user) -> str:
    return UserAPIKey.objects.create_key(user=user, name="quickbg client")[1]
