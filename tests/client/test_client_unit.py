"""The client's own rules, without the model: retries and Retry-After against loopback test
servers, where settings come from, what a folder listing takes and where results go, and the
exit statuses against a live server (requests that fail before any task exists)."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from quickbg_client import APIError, Client, ConfigError, RetryPolicy, config, listing
from quickbg_client.retry import retry_after_seconds

from tests.client.tools import quickbg
from tests.helpers import LocalHTTPServer, free_port

FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)


def flaky(answers):
    """A route answering from ``answers`` in turn (the last repeats)."""
    answers = list(answers)

    def route(handler):
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return route


def test_5xx_and_429_are_retried_until_an_answer():
    ok = (200, {"Content-Type": "application/json"}, b'{"task_id": "t", "status": "queued"}')
    route = flaky([(503, {}, b""), (429, {"Retry-After": "1"}, b""), ok])
    with LocalHTTPServer(routes={"/api/v1/tasks/t": route}) as server:
        with Client(server.url(""), "key", retries=FAST) as client:
            started = time.monotonic()
            assert client.task("t")["status"] == "queued"
            waited = time.monotonic() - started
    assert [r["path"] for r in server.requests] == ["/api/v1/tasks/t"] * 3
    assert all(r["headers"]["X-Api-Key"] == "key" for r in server.requests)
    assert 1.0 <= waited < 3  # the Retry-After second, not the 0.05 s backoff


def test_the_last_error_is_raised_with_the_servers_detail_when_retries_run_out():
    route = (503, {"Content-Type": "application/json"}, b'{"detail": "database down"}')
    with LocalHTTPServer(routes={"/api/v1/tasks/t": route}) as server:
        with Client(server.url(""), "key", retries=FAST) as client, \
                pytest.raises(APIError) as caught:
            client.task("t")
    assert (caught.value.status, caught.value.detail) == (503, "database down")
    assert len(server.requests) == FAST.attempts


def test_a_4xx_is_not_retried():
    route = (404, {"Content-Type": "application/json"}, b'{"detail": "Not found."}')
    with LocalHTTPServer(routes={"/api/v1/tasks/t": route}) as server:
        with Client(server.url(""), "key", retries=FAST) as client, pytest.raises(APIError):
            client.task("t")
    assert len(server.requests) == 1


def test_connection_errors_are_retried_then_raised():
    with Client(f"http://127.0.0.1:{free_port()}", "key", retries=FAST) as client, \
            pytest.raises(httpx.ConnectError):
        client.task("t")


def test_an_upload_still_in_progress_under_its_key_is_waited_out(tmp_path):
    accepted = (202, {"Content-Type": "application/json"},
                b'{"upload_id": "u", "task_id": "t", "status": "queued", "message": "m"}')
    busy = (409, {"Content-Type": "application/json"},
            b'{"detail": "A request with this Idempotency-Key is still in progress"}')
    (tmp_path / "a.jpg").write_bytes(b"x" * 100)
    with LocalHTTPServer(routes={"/api/v1/uploads": flaky([busy, accepted])}) as server:
        with Client(server.url(""), "key", retries=FAST) as client:
            result = client.upload(tmp_path / "a.jpg", idempotency_key="k1", format="webp",
                                   crop=False)
    assert result.task_id == "t"
    first, second = server.requests
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"] == "k1"
    assert first["body"].count(b"x" * 100) == second["body"].count(b"x" * 100) == 1
    assert b'name="format"\r\n\r\nwebp' in first["body"]
    assert b'name="crop"\r\n\r\nfalse' in first["body"]
    assert int(first["headers"]["Content-Length"]) == len(first["body"])


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds(httpx.Response(429, headers={"Retry-After": when}))
    assert 28 <= seconds <= 30


def test_settings_come_from_arguments_then_environment_then_the_config_file(tmp_path,
                                                                            monkeypatch):
    file = tmp_path / "config.toml"
    file.write_text('url = "http://127.0.0.1:9001"\napi_key = "from-file"\n')
    monkeypatch.setenv("QUICKBG_CONFIG", str(file))
    monkeypatch.delenv("QUICKBG_URL", raising=False)
    monkeypatch.delenv("QUICKBG_API_KEY", raising=False)
    assert config.resolve() == config.Settings("http://127.0.0.1:9001", "from-file")
    monkeypatch.setenv("QUICKBG_API_KEY", "from-env")
    assert config.resolve().api_key == "from-env"
    assert config.resolve("http://127.0.0.1:9002/", "arg").url == "http://127.0.0.1:9002"
    file.write_text('api_key = "k"\ntoken = "x"\n')
    with pytest.raises(ConfigError, match="unknown keys"):
        config.resolve()
    monkeypatch.setenv("QUICKBG_CONFIG", str(tmp_path / "missing.toml"))
    monkeypatch.delenv("QUICKBG_API_KEY")
    with pytest.raises(ConfigError, match="does not exist"):
        config.resolve()


def test_the_listing_mirrors_globs_and_keeps_results_apart(tmp_path):
    src = tmp_path / "photos"
    for name in ("a.jpg", "a.png", "b.JPEG", "notes.txt", "sub/c.webp", "sub/deep/d.bmp",
                 ".hidden/e.jpg", "out/old.png"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"x")
    items = list(listing.items([src], [], src / "out"))
    assert [i.rel for i in items] == ["a.jpg", "a.png", "b.JPEG", "sub/c.webp",
                                      "sub/deep/d.bmp"]
    assert [listing.output_rel(i, "png") for i in items] == [
        "a.jpg.png", "a.png.png", "b.png", "sub/c.png", "sub/deep/d.png"]
    assert [i.rel for i in listing.items([src], ["*.webp", "sub/deep/*"], src / "out")] == [
        "sub/c.webp", "sub/deep/d.bmp"]
    two = list(listing.items([src / "sub", src / "a.jpg"], [], tmp_path / "o"))
    assert [i.rel for i in two] == ["sub/c.webp", "sub/deep/d.bmp", "a.jpg"]
    assert listing.count([src], [], src / "out") == 5


@pytest.mark.django_db(transaction=True)
def test_exit_status_2_for_a_missing_or_refused_key_and_a_bad_option(live_server, api_key,
                                                                     tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"not used")
    folder = ("remove", str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    refused = quickbg(live_server.url, "not-a-key", *folder)
    assert refused.returncode == 2
    assert b"the server refused the API key (401): Invalid API key" in refused.stderr
    missing = quickbg(live_server.url, "", "account")
    assert missing.returncode == 2 and b"no API key" in missing.stderr
    bad = quickbg(live_server.url, api_key, *folder, "--bg-color", "nope")
    assert bad.returncode == 2, bad.stderr
    assert b"bg_color: must be a hex colour" in bad.stderr
    usage = quickbg(live_server.url, api_key, "remove", str(tmp_path / "in"))
    assert usage.returncode == 2 and b"-o OUT is required" in usage.stderr


@pytest.mark.django_db(transaction=True)
def test_models_come_from_the_servers_catalogue(live_server, api_key):
    """The real server's GET /api/v1/models: every model of the catalogue, none left out."""
    from removal import modelstore

    with Client(live_server.url, api_key) as client:
        names = [m["name"] for m in client.models()]
    assert set(names) == set(modelstore.MODELS)
    assert {"isnet-general-use", "isnet-general-use-quant", "u2netp", "bria-rmbg"} <= set(names)


def test_models_from_the_models_endpoint_when_the_server_has_it():
    body = b'[{"name": "isnet-general-use", "description": "general"}, {"name": "u2netp"}]'
    routes = {"/api/v1/models": (200, {"Content-Type": "application/json"}, body)}
    with LocalHTTPServer(routes=routes) as server, Client(server.url(""), "k") as client:
        assert [m["name"] for m in client.models()] == ["isnet-general-use", "u2netp"]


def test_the_package_imports_nothing_but_the_standard_library_and_its_four_dependencies():
    import ast
    import sys as system

    from tests.client.tools import CLIENT_DIR

    allowed = {"httpx", "tqdm", "tenacity", "watchdog", "tomli", "quickbg_client"}
    for path in (CLIENT_DIR / "quickbg_client").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in system.stdlib_module_names, (path.name, name)


def test_the_listing_is_lazy_and_the_runs_queues_are_bounded(tmp_path, monkeypatch):
    import os

    from quickbg_client.runner import FolderRun

    for d in range(30):
        (tmp_path / "src" / f"d{d:02}").mkdir(parents=True)
        (tmp_path / "src" / f"d{d:02}" / "a.jpg").write_bytes(b"x")
    scanned = []
    real_scandir = os.scandir
    monkeypatch.setattr(listing.os, "scandir", lambda p: scanned.append(p) or real_scandir(p))
    walk = listing.items([tmp_path / "src"], [], tmp_path / "out")
    first = next(walk)
    assert first.rel == "d00/a.jpg" and len(scanned) == 2  # the root and the first folder only
    assert len(list(walk)) == 29 and len(scanned) == 31

    with Client("http://127.0.0.1:9", "k") as client:
        run = FolderRun(client, [tmp_path / "src"], tmp_path / "out", jobs=3, max_pending=5)
    assert run.work.maxsize == 6  # the lister waits for the uploaders: 2 x jobs listed ahead
    # At most max_pending tasks in flight (uploaded, not yet downloaded).
    assert [run.slots.acquire(blocking=False) for _ in range(6)] == [True] * 5 + [False]
