"""Normalised scores, from the reference scores in :data:`REFERENCE_SCORES`.

Atari: ``100 * (score - random) / (human - random)``. D4RL MuJoCo:
``100 * (score - min) / (max - min)`` with D4RL's reference min/max returns.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class ReferenceScore(NamedTuple):
    low: float
    """Atari: random-policy score; D4RL: reference min score."""
    high: float
    """Atari: human score; D4RL: reference max score."""
    source: str
    """"atari" (random/human) or "d4rl" (min/max)."""


REFERENCE_SCORES: dict[str, ReferenceScore] = {
    "Seaquest": ReferenceScore(68.4, 42054.7, "atari"),
    "Pong": ReferenceScore(-20.7, 14.6, "atari"),
    "Breakout": ReferenceScore(1.7, 30.5, "atari"),
    "Qbert": ReferenceScore(163.9, 13455.0, "atari"),
    "BankHeist": ReferenceScore(14.2, 753.1, "atari"),
    "DoubleDunk": ReferenceScore(-18.6, -16.4, "atari"),
    "Gravitar": ReferenceScore(173.0, 3351.4, "atari"),
    "Asterix": ReferenceScore(210.0, 8503.3, "atari"),
    "SpaceInvaders": ReferenceScore(148.0, 1668.7, "atari"),
    "halfcheetah": ReferenceScore(-280.178953, 12135.0, "d4rl"),
    "hopper": ReferenceScore(-20.272305, 3234.3, "d4rl"),
    "walker2d": ReferenceScore(1.629008, 4592.3, "d4rl"),
}
"""Keyed by the canonical Atari game name or the lower-case D4RL env name."""

_LOOKUP = {re.sub(r"[^a-z0-9]", "", key.lower()): key for key in REFERENCE_SCORES}


def reference_key(env_name: str) -> str | None:
    """The :data:`REFERENCE_SCORES` key for an env or dataset name, or None.

    Accepts Atari game names and ALE ids ("Seaquest", "ALE/Seaquest-v5",
    "space_invaders"), gymnasium MuJoCo ids ("HalfCheetah-v5") and D4RL
    dataset names ("halfcheetah-medium-v2").
    """
    name = env_name.split("/", 1)[1] if env_name.startswith("ALE/") else env_name
    base = name.split("-", 1)[0]
    return _LOOKUP.get(re.sub(r"[^a-z0-9]", "", base.lower()))


def normalized_score(env_name: str, score: float) -> float | None:
    """The normalised score (100 = human / D4RL expert), or None for envs without reference scores."""
    key = reference_key(env_name)
    if key is None:
        return None
    ref = REFERENCE_SCORES[key]
    return 100.0 * (float(score) - ref.low) / (ref.high - ref.low)
