import gymnasium as gym
import pytest
import torch

from fh_rl.agents import AgentConfig, available_agents, build_agent
from fh_rl.agents.encoders import stack_frames
from fh_rl.datasets.batch import WindowBatch
from fh_rl.datasets.sampling import TransitionSampler, WindowSampler
from fh_rl.envs.codecs import make_codec
from fh_rl.heads import available_heads, head_scores
from tests.agents.synthetic import codec_for, synthetic_dataset

T = 4
KINDS = ["discrete", "box", "frames"]
# Heads that score continuous actions act in Box spaces only.
COMBOS = [(h, k) for h in available_heads() for k in KINDS if head_scores(h) == "bins" or k == "box"]


def _tensors(out):
    """The distribution's tensors of a head output, whatever the head scores."""
    return [t for t in out[:-1] if t is not None]


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


@pytest.mark.parametrize("head, kind", COMBOS)
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
    actions = model.encode_actions(b.actions)  # bins, or values in [-1, 1]
    out = model(b.states, actions, b.returns_to_go, b.timesteps, b.mask)
    s, r, a = b.states.clone(), b.returns_to_go.clone(), actions.clone()
    s[:, -1] += 1.0
    r[:, -1] += 1.0
    a[:, -2:] = (a[:, -2:] + 1) % model.num_bins if head_scores(head) == "bins" else -a[:, -2:] * 0.5
    out2 = model(s, a, r, b.timesteps, b.mask)
    for x, y in zip(_tensors(out), _tensors(out2), strict=True):
        assert torch.allclose(x[:, :-2], y[:, :-2], atol=1e-6)
        assert not torch.allclose(x[:, -1], y[:, -1])
    # next_action is the last step's output
    for x, y in zip(_tensors(model.next_action(b.states, actions, b.returns_to_go, b.timesteps, b.mask)), _tensors(out), strict=True):
        assert torch.allclose(x, y[:, -1], atol=1e-6)


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
    with pytest.raises(ValueError, match="actions must have shape"):
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


# ----------------------------------------------------------------- heads that score continuous actions


def test_continuous_head_on_discrete_actions_is_a_clear_error():
    for head in available_heads("continuous"):
        with pytest.raises(ValueError, match=rf"head '{head}' scores continuous actions and needs a Box action space, "
                                             r"but this action space has Discrete\(6\) actions; "
                                             r"use a head that scores bins \(chebyshev, fourier, gmm, linear"):
            make("dt", head, "discrete")


@pytest.mark.parametrize("agent", available_agents())
def test_continuous_heads_take_and_predict_scaled_actions(agent):
    model, sampler = make(agent, "gaussian", "box")
    b = sampler.sample()
    actions = model.encode_actions(b.actions)
    assert actions.dtype == torch.float32 and actions.abs().max() <= 1
    torch.testing.assert_close(torch.as_tensor(model.decode_actions(actions)), b.actions)  # [-2, 2] x [0, 1] and back
    if agent == "dt":
        assert type(model.action_embed).__name__ == "LinearActionEmbedding"
        assert {"action_embed.weight", "action_embed.bias"} <= set(model.state_dict())
        with pytest.raises(TypeError, match="takes actions as floats in \\[-1, 1\\], got torch.int64"):
            model(b.states, model.action_bins(b.actions), b.returns_to_go, b.timesteps, b.mask)
    out = model.loss(b)
    assert model.objective == "nll_density"
    # The held-out ingredients are in the quantized heads' units: a pmf over the codec's 8 bins.
    assert out.log_probs.shape == (int(out.tokens), 2, 8) and out.targets.shape == (int(out.tokens), 2)
    torch.testing.assert_close(out.log_probs.exp().sum(-1), torch.ones(int(out.tokens), 2), atol=1e-5, rtol=0)
    assert out.action_mse is not None and 0 <= float(out.action_mse) <= 4


def test_mse_head_has_no_pmf_and_accuracy_is_the_bin_of_its_action():
    model, sampler = make("bc", "mse", "box")
    model.eval()
    b = sampler.sample()
    with torch.no_grad():
        out = model.loss(b)
        prediction = torch.tanh(model(b.states).mean)  # (B, 2) on the [-1, 1] scale
    assert model.objective == "mse" and out.log_probs is None
    env_actions = model.codec.from_unit(prediction)
    bins = model.action_bins(env_actions)
    assert torch.equal(out.chosen, bins)
    assert float(out.accuracy) == pytest.approx(float((bins == model.action_bins(b.actions)).float().mean()))
    scaled = model.encode_actions(b.actions)
    assert float(out.nll) == pytest.approx(float(((prediction - scaled) ** 2).mean()), rel=1e-5)
    assert float(out.action_mse) == pytest.approx(float(out.nll), rel=1e-4)  # its objective is the action MSE
    with pytest.raises(ValueError, match="head 'mse' predicts a point, not a distribution over bins"):
        model.action_log_probs(b.states[:, None], None, None, None, None)


def test_gaussian_pmf_uses_the_codec_bins_with_margins():
    codec = make_codec(gym.spaces.Box(-2.0, 2.0, (1,)), num_bins=8, margin_bins=2)
    cfg = AgentConfig(name="dt", embed_dim=16, n_layer=1, n_head=2, context_len=T, max_timestep=50, dropout=0.0)
    model = build_agent(cfg, head="gaussian", state_shape=(3,), codec=codec)
    b = WindowSampler(synthetic_dataset("box"), T, 6).sample()
    b = WindowBatch(b.states, b.actions[..., :1] * 0.5, b.returns_to_go, b.timesteps, b.mask)
    lp = model.action_log_probs(b.states, model.encode_actions(b.actions), b.returns_to_go, b.timesteps, b.mask)
    assert lp.shape == (6, 1, 12)  # 8 bins over [-2, 2] and 2 margin bins on each side
    assert torch.isneginf(lp[..., :2]).all() and torch.isneginf(lp[..., -2:]).all()  # no mass beyond the bounds
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(6, 1), atol=1e-5, rtol=0)
    assert int(model.loss(b).targets.min()) >= 2  # targets are bins of the same codec, never a margin bin


@pytest.mark.parametrize("head", available_heads("continuous"))
def test_continuous_heads_learn_a_deterministic_action(head):
    """BC on actions that are a function of the state: the evaluation action gets close to the data's."""
    model, sampler = make("bc", head, "box")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        out = model.loss(sampler.sample())
        first = first if first is not None else float(out.action_mse)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    big = TransitionSampler(synthetic_dataset("box", seed=1), 200, seed=1).sample()
    with torch.no_grad():
        final = model.loss(big)
    assert float(final.action_mse) < min(0.02, first / 5), (first, float(final.action_mse))


@pytest.mark.parametrize("head", available_heads("bins"))
def test_bin_heads_accuracy_is_argmax_against_target_also_with_margins(head):
    codec = make_codec(gym.spaces.Box(-2.0, 2.0, (2,)), num_bins=6, margin_bins=3)
    cfg = AgentConfig(name="bc", embed_dim=16, hidden_dim=16, dropout=0.0)
    torch.manual_seed(0)
    model = build_agent(cfg, head=head, state_shape=(3,), codec=codec).eval()
    with torch.no_grad():
        model.head.proj.bias.zero_()
        model.head.proj.bias[0] = 5.0  # pushes the linear head's first dimension into margin bin 0
        out = model.loss(TransitionSampler(synthetic_dataset("box"), 64, seed=0).sample())
    argmax = out.log_probs.argmax(-1)
    assert torch.equal(out.chosen, argmax)  # a margin bin counts as the margin bin, never as the bound's bin
    assert float(out.accuracy) == pytest.approx(float((argmax == out.targets).float().mean()))
    if head == "linear":
        assert (argmax[:, 0] == 0).all() and float(out.accuracy) < 1


def test_paper_cross_entropy_loss_form_needs_a_pmf():
    cfg = AgentConfig(name="dt", embed_dim=16, n_layer=1, n_head=2, context_len=T, loss_form="cross_entropy")
    with pytest.raises(ValueError, match="agent.loss_form='cross_entropy' is a cross-entropy over a head's log-pmf, "
                                         "but head 'gaussian' scores continuous actions; use agent.loss_form=nll"):
        build_agent(cfg, head="gaussian", state_shape=(3,), codec=codec_for("box"))
