"""README, *Folders and scripts*: the block as written, in bash, in a fresh venv made by the
block itself (``pip install ./client``, a full install from PyPI), against a live server and a
real worker. Three model runs: two photos (one batch), and one of them again as WebP.
(``tests/e2e/test_client_make_run.py`` runs the same block against ``make run``.)"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from removal.models import Task
from tests.client.tools import assert_readme_client_outputs, run_readme_client_block
from tests.live import run_reaped

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.model]


def test_readme_client_block_installs_and_runs(worker, live_server, user, api_key, tmp_path):
    env = {"QUICKBG": live_server.url, "QUICKBG_API_KEY": api_key}
    done = run_readme_client_block(tmp_path, env)
    assert_readme_client_outputs(tmp_path, done)
    tasks = Task.objects.filter(upload__owner=user)
    assert (tasks.count(), tasks.filter(cached=False).count()) == (4, 3)
    assert tasks.exclude(batch=None).count() == 2  # the folder's two photos: one batch

    # The installed command is the venv's own copy, and its usage errors are exit status 2.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), **env}
    quickbg = tmp_path / "home" / ".quickbg-client" / "bin" / "quickbg"
    helped = run_reaped([str(quickbg), "--help"], timeout=60, env=env)
    assert helped.returncode == 0 and b"Exit status: 0 all done" in helped.stdout
    usage = run_reaped([str(quickbg), "remove", "nowhere", "-o", "out"], timeout=60, env=env,
                       cwd=tmp_path)
    assert usage.returncode == 2 and b"no such file or folder: nowhere" in usage.stderr
    assert Image.open(io.BytesIO((tmp_path / "out" / "car.png").read_bytes())).mode == "RGBA"
