"""The README's ``bench/upload.py`` command runs as printed (one request per variant here)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import reap, subprocess_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_readme_upload_bench_runs_and_prints_both_variants():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- bench-upload-start -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README has no bench-upload block"
    command = block.group(1).strip()
    proc = subprocess.Popen(["bash", "-e", "-c", command + " --requests 1"], cwd=ROOT,
                            env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=600)
    finally:
        reap(proc, first_signal=9)
    assert proc.returncode == 0, output
    assert re.search(r"input: 4000x3000 JPEG, 9\.\d+ MB", output), output
    for variant in ("shipped check", "header only", "1/8 draft decode"):
        assert re.search(rf"{re.escape(variant)}\s+p50\s+[\d.]+ ms", output), output
