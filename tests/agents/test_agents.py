import pytest
import torch

from fh_rl.agents import AgentConfig, available_agents, build_agent
from fh_rl.agents.encoders import stack_frames
from fh_rl.datasets.batch import WindowBatch
from fh_rl.heads import available_heads
from fh_rl.datasets.sampling import TransitionSampler, WindowSampler
from tests.agents.synthetic import codec_for, synthetic_dataset

T = 4
KINDS = ["discrete", "box", "frames"]


def make(agent: str, head: str, kind: str, seed: int = 0):
    torch.manual_seed(seed)
    codec = codec_for(kind)
    state_shape = (4, 84, 84) if kind == "frames" else (3,)
    cfg = AgentConfig(name=agent, embed_dim=16, n_layer=1, n_head=2, context_len=T, max_timestep=50, hidden_dim=16, dropout=0.0)
    model = build_agent(
        cfg,
        head=head,
        state_shape=state_shape,
        codec=codec,
        state_mean=None if kind == "frames" else torch.tensor([0.1, 0.2, 0.3]),
        state_std=None if kind == "frames" else torch.tensor([1.0, 2.0, 3.0]),
        rtg_scale=10.0,
    )
    data = synthetic_dataset(kind, seed=seed)
    sampler = WindowSampler(data, T, 6, seed=seed) if agent == "dt" else TransitionSampler(data, 6, seed=seed)
    return model, sampler


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head", available_heads())
@pytest.mark.parametrize("agent", available_agents())
def test_one_step_changes_every_parameter(agent, head, kind):
    model, sampler = make(agent, head, kind)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    out = model.loss(sampler.sample())
    assert out.loss.shape == () and torch.isfinite(out.loss)
    out.loss.backward()
    opt.step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f"parameters not updated: {unchanged}"


@pytest.mark.parametrize("head", available_heads())
def test_dt_loss_ignores_padding_and_future(head):
    model, sampler = make("dt", head, "box")
    model.eval()
    b = sampler.sample()
    b.mask[:] = True
    b.mask[0, :2] = False
    base = model.loss(b)
    # Padding content must not matter.
    b2 = WindowBatch(b.states.clone(), b.actions.clone(), b.returns_to_go.clone(), b.timesteps, b.mask)
    b2.states[0, :2] += 5.0
    b2.returns_to_go[0, :2] -= 3.0
    assert torch.allclose(model.loss(b2).loss, base.loss, atol=1e-6)
    # Causality: the prediction at step t does not see step t+1 (nor its own action).
    bins = model.action_bins(b.actions)
    lp = model(b.states, bins, b.returns_to_go, b.timesteps, b.mask).log_probs
    s, r, a = b.states.clone(), b.returns_to_go.clone(), bins.clone()
    s[:, -1] += 1.0
    r[:, -1] += 1.0
    a[:, -2:] = (a[:, -2:] + 1) % model.num_bins
    lp2 = model(s, a, r, b.timesteps, b.mask).log_probs
    assert torch.allclose(lp[:, :-2], lp2[:, :-2], atol=1e-6)
    assert not torch.allclose(lp[:, -1], lp2[:, -1])


@pytest.mark.parametrize("agent", available_agents())
@pytest.mark.parametrize("kind", KINDS)
def test_action_log_probs_normalised(agent, kind):
    model, _ = make(agent, "linear", kind)
    b = WindowSampler(synthetic_dataset(kind), T, 6).sample()
    states = stack_frames(b.states, T) if kind == "frames" else b.states
    lp = model.action_log_probs(states, model.action_bins(b.actions), b.returns_to_go, b.timesteps, b.mask)
    assert lp.shape == (6, model.action_dims, model.num_bins)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(6, model.action_dims), atol=1e-5)


def test_stack_frames_newest_last():
    frames = torch.arange(2 * 7, dtype=torch.uint8).reshape(2, 7, 1, 1).expand(2, 7, 3, 3)
    stacked = stack_frames(frames, 4)  # (2, 4, 4, 3, 3)
    assert stacked.shape == (2, 4, 4, 3, 3)
    assert stacked[1, 2, :, 0, 0].tolist() == [9, 10, 11, 12]
    with pytest.raises(ValueError, match=r"\(B, T \+ 3, H, W\)"):
        stack_frames(frames, 5)


def test_state_statistics_and_rtg_scale_are_in_state_dict():
    model, _ = make("dt", "fourier", "box")
    sd = model.state_dict()
    assert torch.equal(sd["state_encoder.state_std"], torch.tensor([1.0, 2.0, 3.0]))
    assert float(sd["rtg_scale"]) == 10.0
    assert "head.basis" not in sd  # constants are rebuilt, not stored


def test_bad_shapes_and_config_raise():
    model, sampler = make("dt", "linear", "box")
    b = sampler.sample()
    with pytest.raises(ValueError, match="action_bins must have shape"):
        model(b.states, torch.zeros(6, T, dtype=torch.long), b.returns_to_go, b.timesteps)
    with pytest.raises(ValueError, match=r"states must have shape \(6, 4, 3\), got \(6, 4, 5\)"):
        model(torch.zeros(6, T, 5), model.action_bins(b.actions), b.returns_to_go, b.timesteps)
    with pytest.raises(ValueError, match="exceeds agent.context_len"):
        long = torch.zeros(6, T + 1)
        model(torch.zeros(6, T + 1, 3), torch.zeros(6, T + 1, 2, dtype=torch.long), long, long.long())
    with pytest.raises(ValueError, match="divisible by agent.n_head"):
        build_agent(AgentConfig(embed_dim=10, n_head=3), head="linear", state_shape=(3,), codec=codec_for("discrete"))
    with pytest.raises(ValueError, match="unknown agent 'dtt'; did you mean 'dt'"):
        build_agent(AgentConfig(name="dtt"), head="linear", state_shape=(3,), codec=codec_for("discrete"))
    with pytest.raises(ValueError, match="unknown head"):
        build_agent(AgentConfig(name="bc"), head="fourrier", state_shape=(3,), codec=codec_for("discrete"))
    bc, _ = make("bc", "linear", "box")
    with pytest.raises(ValueError, match="states must have shape"):
        bc(torch.zeros(6, 5))
