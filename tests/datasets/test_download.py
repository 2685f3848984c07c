"""python -m fh_rl.datasets.download: offline failure names the exact command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(args, tmp_path, **env):
    e = {**os.environ, "PYTHONPATH": str(REPO), "FH_RL_GCS_ENDPOINT": "127.0.0.1:9", **env}
    return subprocess.run([sys.executable, "-m", "fh_rl.datasets.download", *args], capture_output=True, text=True, env=e, cwd=tmp_path, timeout=60)


def test_offline_prints_the_gsutil_command(tmp_path):
    r = _run(["Breakout", "--run", "2", "--root", str(tmp_path / "data")], tmp_path)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("error: ")
    assert "gsutil -m cp -R gs://atari-replay-datasets/dqn/Breakout/2" in line
    assert str(tmp_path / "data" / "Breakout" / "2" / "replay_logs") in line
    assert not (tmp_path / "data" / "Breakout" / "2").exists()


def test_bad_game_name_and_print_command(tmp_path):
    r = _run(["breakout"], tmp_path)
    assert r.returncode == 2 and "like 'Breakout'" in r.stderr
    r = _run(["Pong", "--print-command", "--root", "d"], tmp_path)
    assert r.returncode == 0 and "gs://atari-replay-datasets/dqn/Pong/1" in r.stdout
