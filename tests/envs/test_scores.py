from __future__ import annotations

import pytest

from fh_rl.envs import REFERENCE_SCORES, normalized_score


def test_atari_normalisation():
    assert normalized_score("Seaquest", 68.4) == pytest.approx(0.0)
    assert normalized_score("ALE/Seaquest-v5", 42054.7) == pytest.approx(100.0)
    assert normalized_score("Pong", -3.05) == pytest.approx(50.0)
    assert normalized_score("space_invaders", 148.0) == pytest.approx(0.0)


def test_d4rl_normalisation_from_gym_ids_and_dataset_names():
    ref = REFERENCE_SCORES["hopper"]
    assert normalized_score("Hopper-v5", ref.high) == pytest.approx(100.0)
    assert normalized_score("hopper-medium-v2", ref.low) == pytest.approx(0.0)
    assert normalized_score("HalfCheetah-v5", 12135.0) == normalized_score("halfcheetah-expert-v2", 12135.0)
    assert normalized_score("Walker2d-v5", 1.629008) == pytest.approx(0.0)


def test_unknown_env_has_no_normalised_score():
    assert normalized_score("Pendulum-v1", -150.0) is None
    assert normalized_score("MontezumaRevenge", 0.0) is None
