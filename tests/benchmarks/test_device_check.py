"""benchmarks/device_check.sh runs end to end (its dry run: tiny settings, CPU without a GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_device_check_dry_run_writes_summary_and_table(tmp_path):
    # the script runs $PYTHON: this interpreter, whether or not its virtual environment is activated
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "device_check.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["step"] for s in summary["steps"]] == ["environment", "tests", "train", "policy"]
    assert all(s["exit"] == 0 for s in summary["steps"]), summary["steps"]
    ratios = {r["contender"]: r["ratio"] for r in summary["train"]}
    assert ratios["reference-model"] == 1.0 and ratios["linear"] > 0 and ratios["fourier"] > 0
    assert {r["episodes"] for r in summary["policy"]} == {1, 2}
    table = (tmp_path / "table.txt").read_text()
    assert "vs reference-model" in table and "actions/s" in table
