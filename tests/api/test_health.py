"""``GET /api/v1/health``'s storage probe: one write-read-delete per window, not per poll."""

from __future__ import annotations

import pytest

from removal import storage
from removal.api import health

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def probes(monkeypatch):
    """Count the real storage probes; ``probes.fail`` makes the next ones raise."""

    class Probes:
        count = 0
        fail = False

    real = storage.probe

    def counted():
        Probes.count += 1
        if Probes.fail:
            raise OSError("bucket unreachable")
        real()

    monkeypatch.setattr(storage, "probe", counted)
    clock = Clock()
    monkeypatch.setattr(health._storage_probe, "clock", clock)
    health._storage_probe.forget()
    Probes.clock = clock
    yield Probes
    health._storage_probe.forget()


def storage_check(api) -> tuple[int, str]:
    response = api.get("/api/v1/health")
    return response.status_code, response.json()["checks"]["storage"]


def test_two_polls_within_the_window_probe_storage_once(api, probes):
    assert storage_check(api) == (200, "ok")
    probes.clock.now += health.STORAGE_PROBE_SECONDS - 0.1
    assert storage_check(api) == (200, "ok")
    assert probes.count == 1
    probes.clock.now += 0.2
    assert storage_check(api) == (200, "ok")
    assert probes.count == 2


def test_a_failed_probe_is_repeated_for_the_window_only(api, probes):
    probes.fail = True
    assert storage_check(api) == (503, "error")
    probes.fail = False  # storage recovered: the window still reports the failure it saw
    assert storage_check(api) == (503, "error")
    assert probes.count == 1
    probes.clock.now += health.STORAGE_PROBE_SECONDS
    assert storage_check(api) == (200, "ok")
    assert probes.count == 2


def test_a_skipped_storage_check_does_not_probe(api, probes):
    response = api.get("/api/v1/health?skip=storage")
    assert response.status_code == 200 and response.json()["checks"]["storage"] == "skipped"
    assert probes.count == 0
