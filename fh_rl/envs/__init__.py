"""fh_rl.envs: environment factories, action codecs, parallel rollout evaluation, normalised scores.

    from fh_rl.envs import evaluate, make_env, make_env_codec

    env = make_env("Seaquest")                      # dqn-replay protocol, uint8 (4, 84, 84)
    codec = make_env_codec("Seaquest", ordering="joystick")
    bins = codec.encode(dataset_actions)            # (..., 1) int64, numpy or torch
    result = evaluate(policy, "Seaquest", episodes=10, workers=2, seed=0, protocol="dt-paper")
    result.returns, result.normalized, result.summary()

``policy`` implements :class:`fh_rl.envs.policy.Policy` (begin/act/observe
over slots) and returns environment actions (decode bins with the codec).
"""

from fh_rl.envs.codecs import (
    JOYSTICK_ORDER,
    ActionCodec,
    BoxCodec,
    DiscreteCodec,
    codec_from_config,
    joystick_order,
    make_codec,
    make_env_codec,
)
from fh_rl.envs.make import (
    ATARI_MAX_EPISODE_STEPS,
    ATARI_PROTOCOLS,
    canonical_env_name,
    env_kind,
    make_env,
    resolve_protocol,
)
from fh_rl.envs.policy import Policy, RandomPolicy
from fh_rl.envs.rollout import EvalResult, RolloutError, evaluate
from fh_rl.envs.scores import REFERENCE_SCORES, normalized_score

__all__ = [
    "ATARI_MAX_EPISODE_STEPS",
    "ATARI_PROTOCOLS",
    "ActionCodec",
    "BoxCodec",
    "DiscreteCodec",
    "EvalResult",
    "JOYSTICK_ORDER",
    "Policy",
    "REFERENCE_SCORES",
    "RandomPolicy",
    "RolloutError",
    "canonical_env_name",
    "codec_from_config",
    "env_kind",
    "evaluate",
    "joystick_order",
    "make_codec",
    "make_env_codec",
    "make_env",
    "normalized_score",
    "resolve_protocol",
]
