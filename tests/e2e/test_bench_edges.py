"""The README's ``bench/edges.py`` command runs as printed (1 MP only, one round, no pymatting)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import reap

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.model
def test_readme_edges_bench_runs_and_prints_the_error_and_the_cost():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- bench-edges-start -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README has no bench-edges block"
    command = block.group(1).strip()
    proc = subprocess.Popen(["bash", "-e", "-c", command + " --sizes 1mp --repeats 1 --no-ml"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=900)
    finally:
        reap(proc, first_signal=9)
    assert proc.returncode == 0, output
    # The composition set is synthetic and seeded: the error ratio is the same on every run.
    ratio = re.search(r"edges colour error, decontaminated / today: ([\d.]+) \(target <= 0.5: "
                      r"meets\)", output)
    assert ratio and float(ratio.group(1)) < 0.45, output
    assert re.search(r"veil colour error, decontaminated / today: 0\.\d+", output), output
    assert re.search(r"inference [\d.]+, decontaminate [\d.]+ = [\d.]+% of the model run",
                     output), output
