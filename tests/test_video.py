"""Watching an agent: python -m fh_rl.evaluate RUN --video N (gymnasium's RecordVideo, pmf beside each frame)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fh_rl
from fh_rl.api import ActionDistribution
from fh_rl.infra.cli import run_cli
from fh_rl.video import PANEL_WIDTH, pmf_panel

pytest.importorskip("moviepy", reason='--video needs moviepy: pip install "fh_rl[video]"')
REPO = Path(__file__).resolve().parents[1]
TINY = {"agent": {"embed_dim": 16, "n_layer": 1, "n_head": 2, "context_len": 4, "hidden_layers": 0},
        "train": {"steps": 10, "batch_size": 16, "val_every": 10, "val_batches": 1, "threads": 1}}


def test_pmf_panel_draws_one_bar_per_bin():
    from fh_rl.envs.codecs import BoxCodec

    codec = BoxCodec([-2.0], [2.0], num_bins=8, margin_bins=1)  # the head sees 10 bins
    pmf = np.full((1, 10), 0.05)
    pmf[0, 6] = 0.6
    panel = pmf_panel(ActionDistribution(pmf=pmf, values=np.zeros((1, 10))), codec, height=100, width=200)
    assert panel.shape == (100, 200, 3) and panel.dtype == np.uint8
    orange = np.all(panel == (230, 120, 20), axis=-1)
    assert orange[:, 120:138].any() and not orange[:, :120].any()  # the most likely bin (6 of 10) only
    blue = np.all(panel == (40, 90, 200), axis=-1)
    assert blue.any(axis=0)[[5, 45, 165]].all()  # the other bins' (shorter) bars
    assert np.all(panel[50, 1:15] == 225) and np.all(panel[50, 185:199] == 225)  # margin bins 0 and 9: grey
    assert np.all(panel[50, 25:35] == 255)  # an inner bin's background: white
    assert orange.sum(axis=0).max() == 92 and blue.sum(axis=0).max() == round(0.05 / 0.6 * 92)  # heights: p / max p
    empty = pmf_panel(ActionDistribution(pmf=None, values=np.zeros((1, 10))), codec, height=100, width=200)
    assert (empty == 255).all()  # a point prediction has no pmf to draw


@pytest.mark.slow
def test_evaluate_records_videos_into_the_run_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fh_rl import evaluate as evaluate_cli
    from fh_rl.datasets.collect import collect_control

    data = collect_control("CartPole-v1", 400, tmp_path / "cartpole.hdf5", expert_episodes=2, progress=False)
    run = fh_rl.fit(**TINY, env={"name": "CartPole-v1"}, dataset={"path": str(data), "build": None},
                    eval={"episodes": 1, "workers": 0}, **{"agent.max_timestep": 500}, run_root=str(tmp_path / "runs"),
                    progress=False)
    assert run_cli(evaluate_cli.main, [str(run), "--episodes", "2", "--workers", "0", "--video", "2", "--seed", "3",
                                       "--no-progress"]) == 0
    (written,) = run.glob("eval-*.json")
    returns = json.loads(written.read_text())["results"][0]["returns"]
    files = sorted((run / "videos" / written.stem).glob("*.mp4"))
    assert [f.name for f in files] == ["episode-episode-0.mp4", "episode-episode-1.mp4"]

    import imageio.v3 as iio

    frames = iio.imread(files[0])  # (T + 1, H, W, 3): the reset frame and one per step
    env = fh_rl.load(run).make_env(render_mode="rgb_array")
    env.reset(seed=3)
    height, width, _ = env.render().shape
    assert frames.shape[1:] == (height, width + PANEL_WIDTH, 3)
    assert len(frames) == int(returns[0]) + 1  # CartPole: reward 1 per step, so the video shows evaluation episode 0
    acc = EventAccumulator(str(run), size_guidance={"images": 0})
    acc.Reload()
    assert {"video/episode_0", "video/episode_1"} <= set(acc.Tags()["images"])
    (gif,) = acc.Images("video/episode_0")
    assert gif.encoded_image_string[:6] == b"GIF89a" and gif.width == 480  # scaled to the GIF's width
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(gif.encoded_image_string)).n_frames == len(frames)  # animated: every frame (< 300)


@pytest.mark.slow
def test_atari_videos_show_the_raw_screen(tmp_path):
    """The recorded frames are the emulator's 210x160 RGB screen, not the 84x84 stack the agent reads."""
    from fh_rl import train as train_cli
    from fh_rl.video import record_videos

    sets = ["agent.embed_dim=16", "agent.n_layer=1", "agent.n_head=2", "agent.context_len=4", "train.batch_size=8",
            "train.steps=2", "train.val_batches=1", "train.threads=1", "eval.episodes=1", "eval.workers=0",
            f"dataset.path={REPO / 'tests' / 'fixtures' / 'dqn-replay'}", "dataset.max_transitions=null",
            "dataset.replay_sampling=null", "agent.max_timestep=2000", f"run_root={tmp_path / 'runs'}"]
    argv = ["--config", str(REPO / "configs" / "atari" / "breakout.yaml"), "--no-progress", "--no-eval"]
    assert run_cli(train_cli.main, argv + [a for s in sets for a in ("--set", s)]) == 0
    (run,) = (tmp_path / "runs" / "Breakout" / "dt-fourier").iterdir()
    policy = fh_rl.load(run)
    (record,) = record_videos(policy, 1, tmp_path / "videos", seed=0, max_steps=40)
    import imageio.v3 as iio

    frames = iio.imread(record["file"])
    assert record["length"] == 40 and frames.shape[1:] == (210, 160 + PANEL_WIDTH, 3)
    assert frames[:, :, :160].std() > 10  # a colour screen, not a blank
