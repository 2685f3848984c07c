import gymnasium as gym
import numpy as np
import pytest
import torch

from fh_rl.agents import AgentConfig, build_agent
from fh_rl.agents.inference import AgentPolicy
from fh_rl.envs.codecs import make_codec
from fh_rl.envs.policy import Policy


def dt(codec, state_shape=(3,), T=3, reward_transform="none", head="fourier"):
    torch.manual_seed(0)
    cfg = AgentConfig(name="dt", embed_dim=16, n_layer=1, n_head=2, context_len=T, max_timestep=100)
    return build_agent(cfg, head=head, state_shape=state_shape, codec=codec, reward_transform=reward_transform)


def test_context_returns_to_go_and_timesteps_per_slot():
    agent = dt(make_codec(gym.spaces.Box(-2.0, 2.0, (1,)), num_bins=8), reward_transform="clip")
    policy = AgentPolicy(agent, target_return=10.0, sample=False, cache_states=False)  # raw states in the context
    assert isinstance(policy, Policy)
    obs = np.zeros((2, 3), np.float32)
    policy.begin(np.array([0, 5]), obs)
    for step in range(4):
        actions = policy.act(np.array([0, 5]), obs + step)
        assert actions.shape == (2, 1) and np.all(np.abs(actions) <= 2)
        policy.observe(np.array([0, 5]), np.array([3.0, -0.5]), np.array([False, False]))
    states, bins, rtg, timesteps, mask = policy._context_batch([policy.slots[0], policy.slots[5]])
    assert states.shape == (2, 3, 3) and mask.all()  # truncated to the last T = 3 steps
    assert states[0, :, 0].tolist() == [1.0, 2.0, 3.0] and timesteps[0].tolist() == [1, 2, 3]
    # decremented by the clipped reward (dataset units): 10 - 1 per step for slot 0, 10 + 0.5 per step for slot 5
    assert rtg[0].tolist() == [9.0, 8.0, 7.0] and rtg[1].tolist() == [10.5, 11.0, 11.5]
    assert policy.slots[0].return_to_go == 6.0

    raw = AgentPolicy(agent, target_return=10.0, rtg_mode="raw")
    raw.begin(np.array([0]), obs[:1])
    raw.act(np.array([0]), obs[:1])
    raw.observe(np.array([0]), np.array([3.0]), np.array([False]))
    assert raw.slots[0].return_to_go == 7.0  # the paper's raw decrement


def test_new_episode_resets_slot_and_left_pads():
    agent = dt(make_codec(gym.spaces.Discrete(4)))
    policy = AgentPolicy(agent, target_return=5.0)
    policy.begin(np.array([0, 1]), np.zeros((2, 3)))
    policy.act(np.array([0, 1]), np.zeros((2, 3)))
    policy.observe(np.array([0, 1]), np.ones(2), np.array([True, False]))
    assert 0 not in policy.slots
    policy.begin(np.array([0]), np.zeros((1, 3)))
    policy.act(np.array([0, 1]), np.zeros((2, 3)))
    _, _, rtg, timesteps, mask = policy._context_batch([policy.slots[0], policy.slots[1]])
    assert mask.tolist() == [[False, True], [True, True]] and rtg[0, 1] == 5.0 and timesteps[0, 1] == 0


def test_acting_before_begin_says_what_to_call():
    policy = AgentPolicy(dt(make_codec(gym.spaces.Discrete(4))), target_return=5.0)
    with pytest.raises(ValueError, match=r"slots \[0\] have no episode: call begin\(slots, observations\)"):
        policy.act(np.array([0]), np.zeros((1, 3)))


def test_sampling_is_seeded_and_frames_are_stacked():
    agent = dt(make_codec(gym.spaces.Discrete(6)), state_shape=(4, 84, 84))
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 2, 84, 84), dtype=np.uint8)
    runs = []
    for cache in (True, False):
        policy = AgentPolicy(agent, target_return=1.0, sample=True, seed=3, cache_states=cache)
        policy.begin(np.array([0, 1]), frames[0])
        acts = []
        for t in range(5):
            acts.append(policy.act(np.array([0, 1]), frames[t]))
            policy.observe(np.array([0, 1]), np.zeros(2), np.zeros(2, bool))
        runs.append(np.stack(acts))
    assert np.array_equal(runs[0], runs[1])  # cached state embeddings choose as re-encoding does
    stacked = policy.slots[1].states[-1]  # (the uncached policy keeps the states themselves)  # built from single frames: newest last
    assert stacked.shape == (4, 84, 84) and np.array_equal(stacked, frames[1:5, 1])
    with pytest.raises(ValueError, match="does not match the agent's state shape"):
        policy.act(np.array([0]), np.zeros((1, 3)))


def test_rollout_with_real_environment():
    from fh_rl.envs.rollout import evaluate

    agent = dt(make_codec(gym.spaces.Discrete(2)), state_shape=(4,))
    policy = AgentPolicy(agent, target_return=100.0, sample=True, seed=0)
    result = evaluate(policy, "CartPole-v1", episodes=3, workers=0, seed=0, progress=False)
    assert len(result.returns) == 3 and all(r >= 1 for r in result.returns)
    assert np.array_equal(np.asarray(result.returns), np.asarray(result.lengths))  # CartPole: +1 per step
    assert not policy.slots  # every finished episode released its slot


def _actions(policy, steps=4, n=2):
    obs = np.random.default_rng(0).normal(size=(steps, n, 3)).astype(np.float32)
    slots = np.arange(n)
    policy.begin(slots, obs[0])
    out = []
    for t in range(steps):
        out.append(policy.act(slots, obs[t]))
        policy.observe(slots, np.zeros(n), np.zeros(n, bool))
    return np.stack(out)  # (steps, n, A)


@pytest.mark.parametrize("head", ["gaussian", "mse"])
def test_continuous_heads_act_in_the_box_and_keep_scaled_actions_in_context(head):
    codec = make_codec(gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)), num_bins=8)
    agent = dt(codec, head=head)
    mode = _actions(AgentPolicy(agent, target_return=1.0, sample=False))
    assert mode.shape == (4, 2, 2) and mode.dtype == np.float32
    assert np.all(mode[..., 0] >= -2) and np.all(mode[..., 0] <= 2) and np.all(mode[..., 1] >= 0) and np.all(mode[..., 1] <= 1)
    policy = AgentPolicy(agent, target_return=1.0, sample=True, seed=4)
    drawn = _actions(policy)
    np.testing.assert_array_equal(drawn, _actions(AgentPolicy(agent, target_return=1.0, sample=True, seed=4)))  # seeded
    if head == "mse":
        np.testing.assert_allclose(drawn, mode, atol=1e-6)  # a point prediction: sampling changes nothing
    else:
        assert not np.allclose(drawn, mode)
    _, actions, *_ = policy._context_batch([policy.slots[0]])
    assert actions.dtype == torch.float32 and actions.abs().max() <= 1  # the scaled actions the model takes
    np.testing.assert_allclose(codec.from_unit(actions[0, -1].numpy()), drawn[-1, 0], atol=1e-6)


def test_gaussian_dt_rolls_out_in_pendulum():
    from fh_rl.envs.rollout import evaluate

    agent = dt(make_codec(gym.spaces.Box(-2.0, 2.0, (1,)), num_bins=16), head="gaussian")
    policy = AgentPolicy(agent, target_return=-200.0, sample=True, seed=0)
    result = evaluate(policy, "Pendulum-v1", episodes=2, workers=0, seed=0, progress=False)
    assert list(result.lengths) == [200, 200] and all(-2000 < r < 0 for r in result.returns)


def test_papers_evaluation_code_options():
    """timesteps="current": every context step carries the current step; integer_rtg truncates what the model sees."""
    agent = dt(make_codec(gym.spaces.Discrete(4)), T=3)
    policy = AgentPolicy(agent, target_return=10.0, rtg_mode="raw", timesteps="current", integer_rtg=True)
    obs = np.zeros((1, 3), np.float32)
    policy.begin(np.array([0]), obs)
    for reward in (0.75, 1.5):
        policy.act(np.array([0]), obs)
        policy.observe(np.array([0]), np.array([reward]), np.array([False]))
    policy.act(np.array([0]), obs)
    _, _, rtg, timesteps, mask = policy._context_batch([policy.slots[0]])
    assert timesteps.tolist() == [[2, 2, 2]] and mask.all()
    assert rtg.tolist() == [[10.0, 9.0, 7.0]]  # trunc(10), trunc(9.25), trunc(7.75)
    assert policy.slots[0].return_to_go == 7.75  # the running target itself is not truncated
    policy.begin(np.array([1]), obs)  # a new episode at its first step: padding carries the current step too
    policy.act(np.array([1]), obs)
    _, _, _, timesteps, mask = policy._context_batch([policy.slots[0], policy.slots[1]])
    assert timesteps[1].tolist() == [0, 0, 0] and mask[1].tolist() == [False, False, True]
    own = AgentPolicy(agent, target_return=10.0)
    own.begin(np.array([0]), obs)
    for _ in range(3):
        own.act(np.array([0]), obs)
        own.observe(np.array([0]), np.array([0.5]), np.array([False]))
    own.act(np.array([0]), obs)
    _, _, rtg, timesteps, _ = own._context_batch([own.slots[0]])
    assert timesteps.tolist() == [[1, 2, 3]] and rtg.tolist() == [[9.5, 9.0, 8.5]]
    with pytest.raises(ValueError, match="timesteps must be one of"):
        AgentPolicy(agent, timesteps="now")


@pytest.mark.parametrize("state_shape", [(4, 84, 84), (3,)])
def test_cached_state_embeddings_give_the_same_distributions(state_shape):
    """Each state encoded once when it arrives, against the whole context re-encoded every step: the same
    log-probabilities (to float rounding) at every step, across episode starts and ends in other slots."""
    agent = dt(make_codec(gym.spaces.Discrete(6)), state_shape=state_shape, T=4)
    rng = np.random.default_rng(1)
    if len(state_shape) == 3:
        obs = rng.integers(0, 255, (9, 3, *state_shape[1:]), dtype=np.uint8)  # single frames
    else:
        obs = rng.normal(size=(9, 3, *state_shape)).astype(np.float32)
    policies = [AgentPolicy(agent, target_return=3.0, sample=False, cache_states=c) for c in (True, False)]
    assert policies[0].cache_states and not policies[1].cache_states
    recorded = {c: [] for c in (0, 1)}
    for i, policy in enumerate(policies):
        real = policy.agent.next_hidden

        def recording(*args, _real=real, _into=recorded[i], _head=policy.agent.head, **kwargs):
            out = _real(*args, **kwargs)
            _into.append(_head(out).log_probs)
            return out

        policy.agent.next_hidden = recording
        try:
            slots = np.array([0, 1, 2])
            policy.begin(slots, obs[0])
            for t in range(9):
                live = slots if t < 5 else slots[1:]  # slot 0's episode ends at step 5; slot 0 restarts at 7
                if t == 7:
                    policy.begin(np.array([0]), obs[t, :1])
                    live = slots
                policy.act(live, obs[t, live])
                policy.observe(live, np.ones(len(live)), np.array([t == 4 and s == 0 for s in live]))
        finally:
            del policy.agent.next_hidden
    assert len(recorded[0]) == len(recorded[1]) == 9
    for cached, fresh in zip(recorded[0], recorded[1], strict=True):
        torch.testing.assert_close(cached, fresh, atol=1e-5, rtol=1e-5)
