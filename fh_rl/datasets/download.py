"""Fetch one game's DQN-Replay run from its public bucket.

    python -m fh_rl.datasets.download Breakout --run 1 --root datasets/dqn-replay

Uses ``gsutil`` when it is on PATH, else ``google-cloud-storage``
(``pip install "fh_rl[download]"``). When the bucket cannot be reached (no
internet), it fails with the exact command to run elsewhere and where to put
the files. Files land in ``<root>/<Game>/<run>/replay_logs/``; the download
goes to a temporary directory under ``<root>`` and is renamed into place.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from fh_rl.infra.cli import run_cli

BUCKET = "atari-replay-datasets"
DEFAULT_ROOT = "datasets/dqn-replay"
_ENDPOINT = ("storage.googleapis.com", 443)


def gsutil_command(game: str, run: int, root: str | os.PathLike) -> str:
    """The command that copies a run so that ``<root>/<game>/<run>/replay_logs`` holds its files."""
    return f"mkdir -p {Path(root) / game} && gsutil -m cp -R gs://{BUCKET}/dqn/{game}/{run} {Path(root) / game}/"


def _reachable(timeout: float = 5.0) -> bool:
    endpoint = os.environ.get("FH_RL_GCS_ENDPOINT")  # host:port override (tests, mirrors)
    host, port = (endpoint.rsplit(":", 1)[0], int(endpoint.rsplit(":", 1)[1])) if endpoint else _ENDPOINT
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_message(game: str, run: int, root: Path, why: str) -> str:
    return (
        f"{why}. On a machine with internet access run: `{gsutil_command(game, run, root)}` "
        f"(or `pip install \"fh_rl[download]\"` and rerun this command), then copy the files so that "
        f"{root / game / str(run) / 'replay_logs'}/ holds $store$_observation_ckpt.<N>.gz and the other *_ckpt.<N>.gz files"
    )


def _download_gsutil(game: str, run: int, tmp: Path) -> None:
    cmd = ["gsutil", "-m", "cp", "-R", f"gs://{BUCKET}/dqn/{game}/{run}", str(tmp)]
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise ValueError(f"`{' '.join(cmd)}` failed with exit code {result.returncode}")


def _download_gcs(game: str, run: int, tmp: Path) -> None:
    from google.cloud import storage  # type: ignore[import-not-found]
    from fh_rl.infra.progress import progress_bar

    client = storage.Client.create_anonymous_client()
    prefix = f"dqn/{game}/{run}/"
    blobs = list(client.list_blobs(BUCKET, prefix=prefix))
    if not blobs:
        raise ValueError(f"gs://{BUCKET}/{prefix} is empty; check the game name (e.g. Breakout) and run (1-5)")
    for blob in progress_bar(blobs, desc=f"downloading {game} run {run}", unit="file"):
        dest = tmp / str(run) / blob.name[len(prefix):]
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(dest))


def download(game: str, run: int = 1, root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """Download ``<game>`` run ``run`` into ``<root>/<game>/<run>/replay_logs``; returns that directory."""
    if not game or not game[0].isupper() or not game.isalnum():
        raise ValueError(f"game must be a DQN-Replay game directory name like 'Breakout' or 'SpaceInvaders', got {game!r}")
    if not 1 <= run <= 5:
        raise ValueError(f"run must be 1..5 (the published runs), got {run}")
    root = Path(root).expanduser()
    target = root / game / str(run)
    if (target / "replay_logs").is_dir() and any((target / "replay_logs").iterdir()):
        raise FileExistsError(f"{target / 'replay_logs'} already exists; delete it to download again")
    have_gsutil = shutil.which("gsutil") is not None
    try:
        import google.cloud.storage  # noqa: F401

        have_gcs = True
    except ImportError:
        have_gcs = False
    if not (have_gsutil or have_gcs):
        raise ValueError(_offline_message(game, run, root, "neither gsutil nor google-cloud-storage is installed"))
    if not _reachable():
        raise ValueError(_offline_message(game, run, root, f"cannot reach the public bucket gs://{BUCKET} (no internet?)"))
    (root / game).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".download-{run}-", dir=root / game))
    try:
        (_download_gsutil if have_gsutil else _download_gcs)(game, run, tmp)
        if not (tmp / str(run) / "replay_logs").is_dir():
            raise ValueError(f"the download of gs://{BUCKET}/dqn/{game}/{run} holds no replay_logs directory")
        os.replace(tmp / str(run), target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / "replay_logs"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fh_rl.datasets.download", description=__doc__.split("\n")[0])
    parser.add_argument("game", help="game directory name, e.g. Breakout")
    parser.add_argument("--run", type=int, default=1, help="run number 1..5 (default 1)")
    parser.add_argument("--root", default=DEFAULT_ROOT, help=f"data root (default {DEFAULT_ROOT})")
    parser.add_argument("--print-command", action="store_true", help="only print the gsutil command")
    args = parser.parse_args(argv)
    if args.print_command:
        print(gsutil_command(args.game, args.run, args.root))
        return 0
    path = download(args.game, args.run, args.root)
    print(f"downloaded to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
