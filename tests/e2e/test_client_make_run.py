"""README, *Folders and scripts*, against ``make run``: its command (``manage.py run_local``:
its own Redis, the API, a worker, SQLite, as ``tests/e2e/test_run_local.py`` starts it), an API key
made as the README says (the banner's export line, then *Use QuickBG where you used
remove.bg*'s sign-in and key lines), then the client block as written: ``pip install ./client``
into a fresh venv, ``quickbg remove photos/ -o out/`` twice, and the rest."""

from __future__ import annotations

import re

import pytest
import requests

from tests.client.tools import assert_readme_client_outputs, run_readme_client_block
from tests.e2e.test_run_local import (  # noqa: F401 - run_local is a fixture
    ctrl_c,
    local_env,
    run_local,
    wait_for_health,
    wait_for_log,
)
from tests.helpers import readme_block

pytestmark = [pytest.mark.django_db, pytest.mark.model]


def readme_key_lines() -> str:
    """The README's "Once: sign in and create an API key" lines (up to remove.bg's call)."""
    block = readme_block("removebg-curl-start", "removebg-curl-end")
    lines = block[:block.index("\n# remove.bg's call")]
    assert "QUICKBG_API_KEY=$(curl" in lines
    return lines


def test_the_readme_client_block_works_against_make_run(run_local, tmp_path):  # noqa: F811
    env = local_env(tmp_path)
    port = int(env["PORT"])
    proc = run_local(env, tmp_path / "run.log")
    banner = wait_for_log(tmp_path / "run.log", proc, "manage.py reconcile_tasks --dry-run")
    wait_for_health(port, workers=1)
    export = next(line.strip() for line in banner.splitlines()
                  if line.strip().startswith("export QUICKBG="))
    work = tmp_path / "reader"
    work.mkdir()
    done = run_readme_client_block(work, {}, prelude=f"{export}\n{readme_key_lines()}")
    assert f"http://127.0.0.1:{port}" in export
    assert_readme_client_outputs(work, done)

    # What the server saw: three tasks (two photos, one again as WebP; stdin reused the
    # first result), all the demo user's, through the key the README's lines made.
    password = re.search(r"Demo login: demo / (\S+)", banner).group(1)
    base = f"http://127.0.0.1:{port}"
    token = requests.post(f"{base}/api/v1/auth/token", timeout=30,
                          json={"username": "demo", "password": password}).json()["access"]
    auth = {"Authorization": f"Bearer {token}"}
    tasks = requests.get(f"{base}/api/v1/tasks", params={"page_size": 100}, headers=auth,
                         timeout=30).json()["results"]
    assert sorted(task["status"] for task in tasks) == ["completed"] * 4
    assert sum(not task.get("cached") for task in tasks) == 3
    keys = requests.get(f"{base}/api/v1/api-keys", headers=auth, timeout=30).json()
    names = [key["name"] for key in (keys["results"] if isinstance(keys, dict) else keys)]
    assert names == ["scripts"]
    ctrl_c(proc)
