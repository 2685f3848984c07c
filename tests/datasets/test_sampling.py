"""Window and transition samplers: layout, padding, frame stacks, resumable RNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fh_rl.datasets import Episode, TrajectoryDataset, TransitionSampler, WindowSampler


def _vector_ds():
    rng = np.random.default_rng(0)
    eps = []
    for T in (1, 3, 7, 40, 12):
        obs = rng.normal(size=(T, 4)).astype(np.float32)
        eps.append(Episode(obs, rng.integers(0, 6, size=T), rng.normal(size=T).astype(np.float32), terminated=True))
    return TrajectoryDataset(eps)


def _frame_ds():
    rng = np.random.default_rng(1)
    eps = []
    for T in (2, 9, 25):
        eps.append(Episode(rng.integers(1, 255, size=(T, 84, 84), dtype=np.uint8), rng.integers(0, 18, size=T),
                           rng.normal(size=T).astype(np.float32), terminated=True))
    return TrajectoryDataset(eps, frame_stack=4)


def _reference_window(ds, last, K):
    """Per-sample loop reference (tests only)."""
    ep = int(np.searchsorted(ds.offsets, last, side="right") - 1)
    start = ds.offsets[ep]
    idx = np.arange(last - K + 1, last + 1)
    mask = idx >= start
    return idx, mask, start


@pytest.mark.parametrize("K", [1, 5, 20])
def test_vector_windows_match_reference(K):
    ds = _vector_ds()
    s = WindowSampler(ds, context_len=K, batch_size=64, seed=3)
    b = s.sample()
    assert b.states.shape == (64, K, 4) and b.states.dtype == torch.float32
    assert b.actions.shape == (64, K) and b.actions.dtype == torch.int64
    assert b.returns_to_go.dtype == torch.float32 and b.timesteps.dtype == torch.int64 and b.mask.dtype == torch.bool
    for i in range(64):
        last = None
        real = b.mask[i].numpy()
        assert real[-1], "the last position is always a real step"
        assert np.all(np.diff(real.astype(int)) >= 0), "padding is on the left"
        # Recover the anchor from the last real state.
        last = int(np.flatnonzero((ds.observations == b.states[i, -1].numpy()).all(1))[0])
        idx, mask, start = _reference_window(ds, last, K)
        assert np.array_equal(real, mask)
        assert np.array_equal(b.states[i].numpy()[mask], ds.observations[idx[mask]])
        assert np.all(b.states[i].numpy()[~mask] == 0) and np.all(b.actions[i].numpy()[~mask] == 0)
        assert np.array_equal(b.actions[i].numpy()[mask], ds.actions[idx[mask]])
        np.testing.assert_array_equal(b.returns_to_go[i].numpy()[mask], ds.returns_to_go[idx[mask]])
        assert np.array_equal(b.timesteps[i].numpy()[mask], idx[mask] - start)


def test_frame_windows_carry_k_plus_3_frames():
    ds = _frame_ds()
    K = 6
    b = WindowSampler(ds, context_len=K, batch_size=32, seed=0).sample()
    assert b.states.shape == (32, K + 3, 84, 84) and b.states.dtype == torch.uint8
    for i in range(32):
        frames = b.states[i].numpy()
        last = int(np.flatnonzero((ds.observations == frames[-1]).all((1, 2)))[0])
        ep = int(np.searchsorted(ds.offsets, last, side="right") - 1)
        for j in range(K + 3):
            g = last - (K + 2) + j
            expected = ds.observations[g] if g >= ds.offsets[ep] else np.zeros((84, 84), np.uint8)
            assert np.array_equal(frames[j], expected)
        assert b.mask[i].sum() == min(K, last - ds.offsets[ep] + 1)


def test_transition_stacks_and_vectors():
    ds = _frame_ds()
    b = TransitionSampler(ds, batch_size=50, seed=0).sample()
    assert b.states.shape == (50, 4, 84, 84) and b.actions.shape == (50,)
    for i in range(50):
        st = b.states[i].numpy()
        last = int(np.flatnonzero((ds.observations == st[-1]).all((1, 2)))[0])
        start = ds.episode_start[last]
        for j in range(4):
            g = last - 3 + j
            assert np.array_equal(st[j], ds.observations[g]) if g >= start else np.all(st[j] == 0)
        assert b.actions[i] == ds.actions[last]
    v = TransitionSampler(_vector_ds(), batch_size=8, seed=0).sample()
    assert v.states.shape == (8, 4) and v.states.dtype == torch.float32


def test_every_step_is_a_possible_anchor():
    ds = _vector_ds()
    s = WindowSampler(ds, context_len=3, batch_size=512, seed=0)
    seen = set()
    for _ in range(10):
        b = s.sample()
        for row in b.states[:, -1].numpy():
            seen.add(int(np.flatnonzero((ds.observations == row).all(1))[0]))
    assert seen == set(range(ds.num_transitions))


@pytest.mark.parametrize("make", [lambda ds: WindowSampler(ds, 4, 16, seed=7), lambda ds: TransitionSampler(ds, 16, seed=7)])
def test_state_dict_resumes_exactly(make):
    ds = _vector_ds()
    a = make(ds)
    a.sample()
    state = a.state_dict()
    expected = [a.sample() for _ in range(3)]
    b = make(ds)
    b.load_state_dict(state)
    for e in expected:
        got = b.sample()
        assert torch.equal(got.states, e.states) and torch.equal(got.actions, e.actions)
    with pytest.raises(ValueError, match="bit_generator"):
        b.load_state_dict({})


def test_bad_arguments():
    ds = _vector_ds()
    with pytest.raises(ValueError, match="context_len must be a positive int"):
        WindowSampler(ds, 0, 4)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        TransitionSampler(ds, 0)
    with pytest.raises(TypeError, match="expected a TrajectoryDataset"):
        TransitionSampler([1, 2], 4)
