"""fh_rl.envs: environment factories, action codecs, parallel rollout evaluation, normalised scores."""

from fh_rl.envs.codecs import (
    ActionCodec,
    BoxCodec,
    DiscreteCodec,
    JOYSTICK_ORDER,
    codec_from_config,
    joystick_order,
    make_codec,
)
from fh_rl.envs.make import (
    ATARI_MAX_EPISODE_STEPS,
    ATARI_PROTOCOLS,
    canonical_env_name,
    env_kind,
    make_env,
    resolve_protocol,
)
from fh_rl.envs.policies import RandomPolicy
from fh_rl.envs.policy import Policy
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
    "make_env",
    "normalized_score",
    "resolve_protocol",
]
