"""Watching an agent: episodes recorded with gymnasium's ``RecordVideo``, the step's pmf drawn beside each frame.

    python -m fh_rl.evaluate RUN --video 2       # 2 episodes -> RUN/videos/<time>/*.mp4 and TensorBoard images

The frames are the environment's own rendering (``render_mode="rgb_array"``):
for Atari the emulator's 210x160 RGB screen, not the 84x84 grayscale stack the
agent reads. Beside each frame a panel shows the policy's prediction for the
action at that frame (:meth:`fh_rl.api.Policy.action_distribution`, which does
not advance the episode): one bar per bin and action dimension, the most likely
bin in orange, never-target margin bins on grey. Episode i is reset with seed
``seed + i``, as evaluation episode i is. Each episode also goes to TensorBoard
as an animated GIF (tag ``video/episode_<i>``, Images tab), at most
:data:`GIF_FRAMES` frames (every k-th frame of longer episodes).

Needs ``moviepy`` (gymnasium's encoder) and, for classic-control environments,
``pygame`` (their renderer): ``pip install "fh_rl[video]"``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

GIF_FRAMES = 300
"""Frames of one episode's TensorBoard GIF, at most (longer episodes keep every k-th frame)."""
GIF_WIDTH = 480
"""Pixels of width of the TensorBoard GIF, at most (wider frames are scaled down; the mp4 keeps full size)."""
PANEL_WIDTH = 240
"""Pixels of the pmf panel beside each frame."""


def require_video() -> None:
    """ImportError naming the install command when moviepy (gymnasium's video encoder) is missing."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise ImportError('--video needs moviepy (gymnasium\'s video encoder): pip install "fh_rl[video]"') from None


class PmfPanel(gym.Wrapper):
    """Renders the frame with the policy's pmf for the upcoming action beside it; keeps the episode's frames."""

    def __init__(self, env: gym.Env, policy: Any, panel: bool = True) -> None:
        super().__init__(env)
        self.policy, self.panel = policy, panel
        self.last_obs: Any = None
        self.last_reward: float | None = None
        self.frames: list[np.ndarray] = []

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.last_obs, self.last_reward, self.frames = obs, None, []
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.last_obs, self.last_reward = obs, float(reward)
        return obs, reward, terminated, truncated, info

    def render(self) -> np.ndarray:
        frame = np.asarray(self.env.render())
        if self.panel:
            dist = self.policy.action_distribution(self.last_obs, self.last_reward)
            frame = np.concatenate([frame, pmf_panel(dist, self.policy.agent.codec, frame.shape[0])], axis=1)
        self.frames.append(frame)
        return frame


def pmf_panel(dist: Any, codec: Any, height: int, width: int = PANEL_WIDTH) -> np.ndarray:
    """``(height, width, 3)`` uint8: per action dimension a band of K bars (bar height: the bin's probability over
    the largest), the most likely bin orange, margin bins on grey; blank for a point prediction."""
    panel = np.full((height, width, 3), 255, np.uint8)
    if dist.pmf is None:
        return panel
    pmf = np.asarray(dist.pmf, dtype=np.float64)  # (A, K)
    A, K = pmf.shape
    band = height // A
    margin = getattr(codec, "margin_bins", 0)
    edges = np.linspace(0, width, K + 1).astype(int)  # bar b covers columns edges[b]:edges[b+1]
    for a in range(A):
        top, bottom = a * band + 4, (a + 1) * band - 4
        p = pmf[a] / max(pmf[a].max(), 1e-12)
        best = int(np.argmax(pmf[a]))
        for b in range(K):
            lo, hi = edges[b], max(edges[b + 1] - (1 if K < width // 3 else 0), edges[b] + 1)
            if b < margin or b >= K - margin:
                panel[top:bottom, lo:hi] = 225
            bar = int(round(p[b] * (bottom - top)))
            if bar:
                panel[bottom - bar:bottom, lo:hi] = (230, 120, 20) if b == best else (40, 90, 200)
    return panel


def gif_bytes(frames: list[np.ndarray], fps: float, max_frames: int = GIF_FRAMES) -> tuple[bytes, int, int]:
    """An animated GIF of ``frames`` (every k-th frame beyond ``max_frames``, at most :data:`GIF_WIDTH` wide), with
    its height and width."""
    from PIL import Image

    stride = max(1, int(np.ceil(len(frames) / max_frames)))
    images = [Image.fromarray(f) for f in frames[::stride]]
    if images[0].width > GIF_WIDTH:
        size = (GIF_WIDTH, max(1, round(images[0].height * GIF_WIDTH / images[0].width)))
        images = [im.resize(size, Image.BILINEAR) for im in images]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, int(1000 * stride / max(fps, 1))), loop=0)
    return buffer.getvalue(), images[0].height, images[0].width


def log_gif(writer: Any, tag: str, frames: list[np.ndarray], fps: float, step: int) -> None:
    """An animated GIF as a TensorBoard image summary (the Images tab plays it)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    data, height, width = gif_bytes(frames, fps)
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def record_videos(policy: Any, episodes: int, out_dir: str | Path, *, seed: int, writer: Any = None, step: int = 0,
                  panel: bool = True, max_steps: int | None = None) -> list[dict[str, Any]]:
    """Record ``episodes`` episodes of ``policy`` (an :class:`fh_rl.api.Policy`; episode i on seed ``seed + i``)
    with gymnasium's ``RecordVideo`` into ``out_dir`` (``episode-episode-<i>.mp4``), the pmf panel beside each
    frame, and with ``writer`` each as a GIF at ``step`` (``video/episode_<i>``). ``max_steps``: stop an episode's
    recording after that many steps. Returns per episode its file, seed, return and length."""
    import os

    from gymnasium.wrappers import RecordVideo

    require_video()
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen, without complaining about a display
    if episodes < 1:
        raise ValueError(f"--video must be >= 1 episode, got {episodes}")
    out_dir = Path(out_dir)
    env = policy.make_env(render_mode="rgb_array")
    try:  # a renderer that is not installed (classic control's pygame) says so before anything is written
        env.reset(seed=seed)
        env.render()
    except gym.error.DependencyNotInstalled as exc:
        env.close()
        raise ImportError(f"--video: rendering {policy.config.env.name} needs a package that is missing ({exc}); "
                          f'pip install "fh_rl[video]"') from None
    fps = float(env.metadata.get("render_fps") or 30)
    shown = PmfPanel(env, policy, panel=panel)
    recorder = RecordVideo(shown, str(out_dir), episode_trigger=lambda i: True, name_prefix="episode", fps=int(fps))
    records = []
    try:
        for i in range(episodes):
            policy.reset(seed=seed + i)
            obs, _ = recorder.reset(seed=seed + i)
            total, length, reward, done = 0.0, 0, None, False
            while not done:
                action = policy.predict(obs, reward)
                obs, reward, terminated, truncated, _ = recorder.step(action)
                total, length, done = total + float(reward), length + 1, terminated or truncated
                if max_steps is not None and length >= max_steps and not done:
                    recorder.stop_recording()  # writes the file of the episode so far
                    done = True
            if writer is not None:
                log_gif(writer, f"video/episode_{i}", shown.frames, fps, step)
            records.append({"episode": i, "seed": seed + i, "return": total, "length": length,
                            "file": str(out_dir / f"episode-episode-{i}.mp4")})
    finally:
        recorder.close()
    for r in records:  # RecordVideo names files <prefix>-episode-<i>.mp4
        if not Path(r["file"]).is_file():
            raise RuntimeError(f"RecordVideo wrote no {r['file']} (files there: {sorted(p.name for p in out_dir.glob('*'))})")
    return records
