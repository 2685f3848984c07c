"""Environment factories: Atari (two evaluation protocols), MuJoCo, classic control.

Atari observations are exactly the DQN-Replay data's: uint8 ``(4, 84, 84)``,
newest frame last, zeros before the episode's first frame. The ALE env is made
with ``frameskip=1`` so that :class:`gymnasium.wrappers.AtariPreprocessing` is
the only thing that skips frames (4 per step, max-pool of the last two).

Protocols (``make_env(..., protocol=...)``):

``dqn-replay`` (default)
    The preprocessing the DQN-Replay data was logged with: sticky actions with
    probability 0.25, minimal action set, frame skip 4 with a max over the
    last two frames, grayscale, 84x84 ``INTER_AREA``, no no-op starts, episodes
    truncated after 27,000 agent steps (108,000 frames), no life-loss terminals.
``dt-paper``
    The Decision Transformer paper's evaluation: as above but without sticky
    actions and with 1..30 no-op frames (drawn from the episode's seed) at the
    start of every episode.
``dt-paper-code``
    What the DT paper's Atari evaluation code (reused by the Fourier head
    paper) actually does: no sticky actions, 0..29 no-op frames
    (``random.randrange(30)`` there; drawn from the episode's seed here) and an
    ``INTER_LINEAR`` 84x84 resize, while the data was made with ``INTER_AREA``.
    (That code also resizes each frame before the max over the last two, and
    seeds ALE once per evaluation rather than per episode; those are not
    replicated.)
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
import re
from typing import Any

import gymnasium as gym
import numpy as np

ATARI_PROTOCOLS: dict[str, dict[str, Any]] = {
    "dqn-replay": {"repeat_action_probability": 0.25, "noop_max": 0},
    "dt-paper": {"repeat_action_probability": 0.0, "noop_max": 30},
    "dt-paper-code": {"repeat_action_probability": 0.0, "noop_max": 0, "noop_range": (0, 29), "interpolation": "linear"},
}
"""Per-protocol ALE settings; everything else is shared (see the module docstring). ``noop_max`` N: 1..N
no-op frames (gymnasium's ``AtariPreprocessing``; 0: none); ``noop_range`` (lo, hi): lo..hi no-op frames
instead; ``interpolation``: the 84x84 resize, ``area`` (default) or ``linear``."""

DEFAULT_ATARI_PROTOCOL = "dqn-replay"
ATARI_MAX_EPISODE_STEPS = 27_000
"""Agent steps (4 frames each) before an Atari episode is truncated."""
ATARI_FRAME_SKIP = 4
ATARI_FRAME_STACK = 4
ATARI_SCREEN_SIZE = 84

# Keyword arguments make_env accepts for Atari (anything else is an error).
_ATARI_KWARGS = ("max_episode_steps", "repeat_action_probability", "noop_max", "render_mode")


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.lru_cache(maxsize=1)
def _atari_games() -> dict[str, str]:
    """Maps a normalised game name ("spaceinvaders") to its ALE name ("SpaceInvaders")."""
    import ale_py

    gym.register_envs(ale_py)
    games = {}
    for env_id in gym.registry:
        match = re.fullmatch(r"ALE/(\w+)-v5", env_id)
        if match:
            games[_snake(match.group(1))] = match.group(1)
    return games


def _atari_game(name: str) -> str | None:
    """The ALE game name for ``name`` ("Seaquest", "seaquest", "ALE/Seaquest-v5"), else None."""
    match = re.fullmatch(r"ALE/(\w+)-v(\d+)", name)
    if match:
        if match.group(2) != "5":
            raise ValueError(
                f"Atari id {name!r}: only v5 ids are supported (their frame skip is "
                f"replaced by fh_rl's preprocessing); pass the game name {match.group(1)!r} instead"
            )
        game = _atari_games().get(_snake(match.group(1)))
        if game is None:
            raise ValueError(f"unknown Atari game in {name!r}; {_suggest(match.group(1))}")
        return game
    if re.fullmatch(r"[A-Za-z0-9_]+", name):
        return _atari_games().get(_snake(name))
    return None


def _suggest(name: str) -> str:
    known = sorted(_atari_games().values())
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}known Atari games: {', '.join(known[:8])}, ... ({len(known)} in all)"


def _gym_spec(name: str) -> gym.envs.registration.EnvSpec:
    try:
        if ":" in name:  # "module:EnvId-v0", as gymnasium.make accepts: import the module first
            module, name = name.split(":", 1)
            importlib.import_module(module)
        return gym.spec(name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"environment {name!r}: cannot import its module: {exc}") from None
    except gym.error.Error as exc:  # NameNotFound, VersionNotFound, ... (with gym's suggestions)
        close = difflib.get_close_matches(name, sorted(_atari_games().values()), n=1)
        hint = f"did you mean the Atari game {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown environment {name!r}: {exc}. {hint}Use an Atari game name (e.g. 'Seaquest') "
            f"or a registered gymnasium id (e.g. 'HalfCheetah-v5', 'Pendulum-v1')"
        ) from None


def env_kind(name: str) -> str:
    """``"atari"``, ``"mujoco"`` or ``"control"`` (any other gymnasium env) for an env name."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"environment name must be a non-empty string, got {name!r}")
    if _atari_game(name) is not None:
        return "atari"
    spec = _gym_spec(name)
    entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
    if "ale_py" in entry:
        raise ValueError(f"Atari id {name!r}: use the game name or 'ALE/<Game>-v5'")
    if "mujoco" in entry:
        return "mujoco"
    return "control"


def canonical_env_name(name: str) -> str:
    """The name used for run directories and score tables: the ALE game name for
    Atari ("Seaquest" for "ALE/Seaquest-v5" or "seaquest"), the gym id otherwise."""
    if env_kind(name) == "atari":
        return _atari_game(name)
    return name


def resolve_protocol(name: str, protocol: str | None) -> str | None:
    """The protocol ``make_env(name, protocol)`` uses: an Atari protocol name, or None."""
    if env_kind(name) != "atari":
        if protocol is not None:
            raise ValueError(
                f"protocol {protocol!r} applies to Atari only; {name!r} is a {env_kind(name)} env: "
                f"pass protocol=None"
            )
        return None
    protocol = DEFAULT_ATARI_PROTOCOL if protocol is None else protocol
    if protocol not in ATARI_PROTOCOLS:
        raise ValueError(f"unknown Atari protocol {protocol!r}; choose one of {sorted(ATARI_PROTOCOLS)}")
    return protocol


class NormalizeObservation(gym.ObservationWrapper):
    """``(obs - mean) / std`` with fixed dataset statistics, as float32.

    Standard deviations below ``min_std`` (constant dataset dimensions) are
    raised to it, so the division stays finite.
    """

    def __init__(self, env: gym.Env, mean: np.ndarray, std: np.ndarray, min_std: float = 1e-6) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box):
            raise TypeError(f"observation normalisation needs a Box observation space, got {space}")
        mean = np.asarray(mean, dtype=np.float32)
        std = np.asarray(std, dtype=np.float32)
        for what, value in (("obs_mean", mean), ("obs_std", std)):
            if value.shape != space.shape:
                raise ValueError(
                    f"{what} has shape {value.shape} but the observations of "
                    f"{env.spec.id if env.spec else env} have shape {space.shape}; "
                    f"pass the statistics of a dataset for this environment"
                )
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{what} contains non-finite values")
        if np.any(std < 0):
            raise ValueError("obs_std must be non-negative")
        self.mean = mean
        self.std = np.maximum(std, np.float32(min_std))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, space.shape, np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return ((observation - self.mean) / self.std).astype(np.float32)


class RandomNoopStart(gym.Wrapper):
    """``low..high`` (inclusive) no-op frames after every reset, drawn from the env's seeded generator.

    Wraps the raw ALE env (frame skip 1), under :class:`AtariPreprocessing`, so each no-op is one frame.
    """

    def __init__(self, env: gym.Env, low: int, high: int) -> None:
        super().__init__(env)
        if not 0 <= low <= high:
            raise ValueError(f"no-op range must satisfy 0 <= low <= high, got ({low}, {high})")
        self.low, self.high = int(low), int(high)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        for _ in range(int(self.env.unwrapped.np_random.integers(self.low, self.high + 1))):
            obs, _, terminated, truncated, step_info = self.env.step(0)
            info.update(step_info)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        return obs, info


class _AtariPreprocessing(gym.wrappers.AtariPreprocessing):
    """gymnasium's preprocessing with a choice of resize interpolation (it always uses ``INTER_AREA``)."""

    def __init__(self, env: gym.Env, *, interpolation: str = "area", **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        if interpolation not in ("area", "linear"):
            raise ValueError(f"interpolation must be area or linear, got {interpolation!r}")
        self.interpolation = interpolation

    def _get_obs(self):
        if self.interpolation == "area":
            return super()._get_obs()
        import cv2

        if self.frame_skip > 1:  # max of the last two frames, in place (as the parent does)
            np.maximum(self.obs_buffer[0], self.obs_buffer[1], out=self.obs_buffer[0])
        return np.asarray(cv2.resize(self.obs_buffer[0], self.screen_size, interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


def _make_atari(game: str, protocol: str, seed: int | None, **kwargs: Any) -> gym.Env:
    unknown = sorted(set(kwargs) - set(_ATARI_KWARGS))
    if unknown:
        raise ValueError(f"unknown Atari option(s) {unknown}; make_env accepts {list(_ATARI_KWARGS)} for Atari")
    settings = {**ATARI_PROTOCOLS[protocol], "max_episode_steps": ATARI_MAX_EPISODE_STEPS}
    settings.update({k: v for k, v in kwargs.items() if k != "render_mode"})
    cap = settings["max_episode_steps"]
    if cap is not None and (not isinstance(cap, (int, np.integer)) or cap <= 0):
        raise ValueError(f"max_episode_steps must be a positive int or None, got {cap!r}")
    env = gym.make(
        f"ALE/{game}-v5",
        frameskip=1,  # AtariPreprocessing is the only frame skipper
        obs_type="grayscale",  # cheaper per-frame copy; AtariPreprocessing reads ALE's screens itself
        repeat_action_probability=float(settings["repeat_action_probability"]),
        full_action_space=False,
        max_num_frames_per_episode=0,  # no ALE frame cap; TimeLimit counts agent steps below
        render_mode=kwargs.get("render_mode"),
    )
    if settings.get("noop_range") is not None:
        env = RandomNoopStart(env, *settings["noop_range"])
    env = _AtariPreprocessing(
        env,
        interpolation=settings.get("interpolation", "area"),
        noop_max=int(settings["noop_max"]),
        frame_skip=ATARI_FRAME_SKIP,
        screen_size=ATARI_SCREEN_SIZE,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,
    )
    if cap is not None:
        env = gym.wrappers.TimeLimit(env, max_episode_steps=int(cap))
    env = gym.wrappers.FrameStackObservation(env, ATARI_FRAME_STACK, padding_type="zero")
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def _route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings to the "mujoco" logger instead of stderr plus a
    MUJOCO_LOG.TXT in the working directory (unless a handler is already set)."""
    import mujoco

    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(lambda message: logging.getLogger("mujoco").warning(message))


def make_env(
    name: str,
    protocol: str | None = None,
    seed: int | None = None,
    obs_mean: np.ndarray | None = None,
    obs_std: np.ndarray | None = None,
    **kwargs: Any,
) -> gym.Env:
    """Build an environment by name.

    Args:
        name: an Atari game name ("Seaquest") or ALE v5 id ("ALE/Seaquest-v5"),
            or a gymnasium id ("HalfCheetah-v5", "Pendulum-v1", ...).
        protocol: Atari only: "dqn-replay" (default), "dt-paper" or
            "dt-paper-code" (see the module docstring). Must be None for other environments.
        seed: when given, the env is reset once with it and its action space
            seeded; evaluation seeds every episode's ``reset`` itself.
        obs_mean, obs_std: non-Atari only: dataset statistics; observations
            become ``(obs - mean) / std`` (float32).
        **kwargs: Atari: ``max_episode_steps`` (default 27,000; None for no
            cap), ``repeat_action_probability``, ``noop_max``, ``render_mode``
            override the protocol. Others: passed to ``gymnasium.make``.
    """
    kind = env_kind(name)
    protocol = resolve_protocol(name, protocol)
    if kind == "atari":
        if obs_mean is not None or obs_std is not None:
            raise ValueError("obs_mean/obs_std apply to vector observations; Atari frames are not normalised")
        return _make_atari(_atari_game(name), protocol, seed, **kwargs)
    if (obs_mean is None) != (obs_std is None):
        raise ValueError("pass both obs_mean and obs_std, or neither")
    if kind == "mujoco":
        _route_mujoco_warnings()
    try:
        env = gym.make(name, **kwargs)
    except TypeError as exc:
        raise TypeError(f"make_env({name!r}): bad keyword argument: {exc}") from None
    if obs_mean is not None:
        env = NormalizeObservation(env, obs_mean, obs_std)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env
