"""Parity with the Fourier head paper's Atari Decision Transformer.

Two kinds of truth:
- the paper's own numbers (``tests/fixtures/reference-dt``: its parameters, a batch and its outputs);
- ``reference_forward`` below: the reference model's forward written out from the paper's math, op by
  op, in float64 and independently of fh_rl (separate q/k/v, explicit masked softmax, the Fourier series
  from the autocorrelation of the coefficients). It is itself pinned to the paper's numbers, then
  compared with fh_rl on random reference models of other sizes, so the parity claim does not rest on
  this one fixture's shapes or its near-uniform, freshly initialised outputs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fh_rl.agents import AgentConfig, build_agent, from_reference_state_dict
from fh_rl.datasets.batch import WindowBatch
from fh_rl.envs.codecs import make_codec

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "reference-dt"
EPS = 1e-5  # the reference Fourier head returns log(pmf + 1e-5)
ALE_FROM_JOYSTICK = [0, 4, 7, 2, 6, 3, 8, 5, 9, 12, 15, 10, 14, 11, 16, 13, 17, 1]  # joystick bin -> ALE id


def _load(name):
    return torch.load(FIXTURE / name, weights_only=True)


@pytest.fixture(scope="module")
def fixture():
    return json.loads((FIXTURE / "config.json").read_text()), _load("batch_and_outputs.pt")


def reference_forward(sd, frames, actions, rtg, window_start, n_head):
    """The reference model's output probabilities at the state tokens, (B, T, K), float64.

    Linear head: softmax of the logits over ALE ids. Fourier head: the pmf over joystick-ordered bins.
    """
    sd = {k: v.double() for k, v in sd.items()}
    B, T = actions.shape
    D = sd["pos_emb"].shape[-1]
    # Nature CNN on frames / 255, then Linear(3136, D) and tanh
    x = frames.reshape(B * T, 4, 84, 84).double() / 255.0
    for i, stride in ((0, 4), (2, 2), (4, 1)):
        x = torch.relu(F.conv2d(x, sd[f"state_encoder.{i}.weight"], sd[f"state_encoder.{i}.bias"], stride=stride))
    s = torch.tanh(x.flatten(1) @ sd["state_encoder.7.weight"].T + sd["state_encoder.7.bias"]).reshape(B, T, D)
    r = torch.tanh(rtg.double()[..., None] * sd["ret_emb.0.weight"][:, 0] + sd["ret_emb.0.bias"])
    a = torch.tanh(sd["action_embeddings.0.weight"][actions])
    tokens = torch.zeros(B, 3 * T, D, dtype=torch.float64)
    tokens[:, 0::3], tokens[:, 1::3], tokens[:, 2::3] = r, s, a
    h = tokens + sd["global_pos_emb"][0, window_start][:, None, :] + sd["pos_emb"][:, : 3 * T]

    def ln(v, name):
        return F.layer_norm(v, (D,), sd[f"{name}.weight"], sd[f"{name}.bias"])

    def lin(v, name):
        return v @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]

    hd = D // n_head
    causal = torch.tril(torch.ones(3 * T, 3 * T, dtype=torch.bool))
    for b in range(len({k.split(".")[1] for k in sd if k.startswith("blocks.")})):
        y = ln(h, f"blocks.{b}.ln1")
        q, k, v = (lin(y, f"blocks.{b}.attn.{n}").reshape(B, 3 * T, n_head, hd).transpose(1, 2) for n in ("query", "key", "value"))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = torch.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        h = h + lin((att @ v).transpose(1, 2).reshape(B, 3 * T, D), f"blocks.{b}.attn.proj")
        y = ln(h, f"blocks.{b}.ln2")
        h = h + lin(F.gelu(lin(y, f"blocks.{b}.mlp.0")), f"blocks.{b}.mlp.2")
    h = ln(h, "ln_f")[:, 1::3]  # (B, T, D) at the state tokens
    if "head.weight" in sd:
        return torch.softmax(h @ sd["head.weight"].T, dim=-1)
    p = lin(h, "head.fc_extract_autocorrelation_params")
    N = p.shape[-1] // 2 - 1
    coef = torch.complex(p[..., : N + 1], p[..., N + 1 :])  # a_0..a_N
    auto = torch.stack([(coef[..., k:] * coef[..., : N + 1 - k].conj()).sum(-1) for k in range(N + 1)], -1)  # r_k
    c = auto[..., 1:] / auto[..., :1].real
    K = sd["action_embeddings.0.weight"].shape[0]
    edges = torch.linspace(-1, 1, K + 1, dtype=torch.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    waves = torch.exp(1j * math.pi * torch.arange(1, N + 1, dtype=torch.float64)[None, :] * centres[:, None])  # (K, N)
    pdf = 0.5 + (c[..., None, :] * waves).sum(-1).real  # (B, T, K)
    return pdf / pdf.sum(-1, keepdim=True)


def random_reference_state_dict(*, n_layer, n_embd, context_len, max_timestep, frequencies=None, seed=0, num_actions=18):
    """A reference-shaped state dict with random, deliberately non-small parameters (peaked distributions)."""
    g = torch.Generator().manual_seed(seed)
    D, L = n_embd, 3 * context_len + 1

    def rnd(*shape, std):
        return torch.randn(*shape, generator=g) * std

    sd = {
        "pos_emb": rnd(1, L, D, std=0.3), "global_pos_emb": rnd(1, max_timestep + 1, D, std=0.3),
        "tok_emb.weight": rnd(num_actions, D, std=0.02),
        "state_encoder.0.weight": rnd(32, 4, 8, 8, std=0.1), "state_encoder.0.bias": rnd(32, std=0.1),
        "state_encoder.2.weight": rnd(64, 32, 4, 4, std=0.05), "state_encoder.2.bias": rnd(64, std=0.1),
        "state_encoder.4.weight": rnd(64, 64, 3, 3, std=0.05), "state_encoder.4.bias": rnd(64, std=0.1),
        "state_encoder.7.weight": rnd(D, 3136, std=0.05), "state_encoder.7.bias": rnd(D, std=0.1),
        "ret_emb.0.weight": rnd(D, 1, std=0.5), "ret_emb.0.bias": rnd(D, std=0.5),
        "action_embeddings.0.weight": rnd(num_actions, D, std=0.5),
        "ln_f.weight": 1 + rnd(D, std=0.2), "ln_f.bias": rnd(D, std=0.2),
    }
    for b in range(n_layer):
        for n in ("ln1", "ln2"):
            sd[f"blocks.{b}.{n}.weight"], sd[f"blocks.{b}.{n}.bias"] = 1 + rnd(D, std=0.2), rnd(D, std=0.2)
        sd[f"blocks.{b}.attn.mask"] = torch.tril(torch.ones(L, L)).view(1, 1, L, L)
        for n in ("key", "query", "value", "proj"):
            sd[f"blocks.{b}.attn.{n}.weight"], sd[f"blocks.{b}.attn.{n}.bias"] = rnd(D, D, std=1.5 / math.sqrt(D)), rnd(D, std=0.1)
        sd[f"blocks.{b}.mlp.0.weight"], sd[f"blocks.{b}.mlp.0.bias"] = rnd(4 * D, D, std=1 / math.sqrt(D)), rnd(4 * D, std=0.1)
        sd[f"blocks.{b}.mlp.2.weight"], sd[f"blocks.{b}.mlp.2.bias"] = rnd(D, 4 * D, std=1 / math.sqrt(4 * D)), rnd(D, std=0.1)
    if frequencies is None:
        sd["head.weight"] = rnd(num_actions, D, std=1.0)
    else:
        sd["head.fc_extract_autocorrelation_params.weight"] = rnd(2 * (frequencies + 1), D, std=0.5)
        sd["head.fc_extract_autocorrelation_params.bias"] = rnd(2 * (frequencies + 1), std=0.5)
    return sd


def _fh_rl_probs(agent, frames, actions, rtg, window_start):
    T = actions.shape[1]
    with torch.no_grad():
        out = agent(frames, agent.action_bins(actions), rtg, window_start[:, None] + torch.arange(T))
    probs = out.log_probs[:, :, 0].double().exp()  # (B, T, A=1, K) -> (B, T, K)
    return probs - EPS if agent.head_name == "fourier" else probs


@pytest.mark.parametrize("head", ["linear", "fourier"])
def test_matches_the_papers_outputs(fixture, head):
    config, batch = fixture
    agent = from_reference_state_dict(_load(f"reference_{head}_state_dict.pt"), **config)
    assert agent.head_name == head and agent.config.timestep_embedding == "window_start"
    assert agent.codec.ordering == ("joystick" if head == "fourier" else "identity")
    logits = batch[f"logits_{head}"].double()
    expected = logits.softmax(-1) if head == "linear" else logits.exp() - EPS
    got = _fh_rl_probs(agent, batch["frames"], batch["actions"], batch["returns_to_go"], batch["window_start"])
    assert (got - expected).abs().max() < 1e-5
    # The reference's training loss (a second log-softmax for the Fourier head) is agent.loss's minimised term.
    T = batch["actions"].shape[1]
    window = WindowBatch(states=batch["frames"], actions=batch["actions"], returns_to_go=batch["returns_to_go"],
                         timesteps=batch["window_start"][:, None] + torch.arange(T),
                         mask=torch.ones_like(batch["actions"], dtype=torch.bool))
    with torch.no_grad():
        out = agent.loss(window)
    assert float(out.loss) == pytest.approx(float(batch[f"loss_{head}"]), abs=1e-5)


@pytest.mark.parametrize("head", ["linear", "fourier"])
def test_transcription_reproduces_the_papers_outputs(fixture, head):
    """The independent transcription below is faithful: it gives the paper's numbers."""
    config, batch = fixture
    got = reference_forward(_load(f"reference_{head}_state_dict.pt"), batch["frames"], batch["actions"],
                            batch["returns_to_go"], batch["window_start"], config["n_head"])
    logits = batch[f"logits_{head}"].double()
    expected = logits.softmax(-1) if head == "linear" else logits.exp() - EPS
    assert (got - expected).abs().max() < 1e-6


@pytest.mark.parametrize(
    "sizes",
    [
        dict(n_layer=1, n_head=2, n_embd=32, context_len=3, max_timestep=20, frequencies=4, seed=1, batch=2),
        dict(n_layer=3, n_head=4, n_embd=48, context_len=6, max_timestep=100, frequencies=12, seed=2, batch=3),
        dict(n_layer=2, n_head=1, n_embd=16, context_len=2, max_timestep=7, frequencies=None, seed=3, batch=4),
        dict(n_layer=3, n_head=8, n_embd=64, context_len=4, max_timestep=50, frequencies=None, seed=4, batch=2),
    ],
    ids=["fourier-small", "fourier-larger", "linear-small", "linear-8-heads"],
)
def test_matches_the_reference_math_for_other_sizes(sizes):
    sizes = dict(sizes)
    n_head, B = sizes.pop("n_head"), sizes.pop("batch")
    sd = random_reference_state_dict(**sizes)
    T, max_t = sizes["context_len"], sizes["max_timestep"]
    g = torch.Generator().manual_seed(sizes["seed"] + 100)
    frames = torch.randint(0, 256, (B, T, 4, 84, 84), generator=g, dtype=torch.uint8)
    actions = torch.randint(0, 18, (B, T), generator=g)
    rtg = torch.rand(B, T, generator=g) * 5
    window_start = torch.randint(0, max_t - T + 2, (B,), generator=g)
    expected = reference_forward(sd, frames, actions, rtg, window_start, n_head)
    assert expected.max() > 2 / 18, "the random model should give peaked distributions, not near-uniform ones"
    agent = from_reference_state_dict(sd, n_head=n_head)
    got = _fh_rl_probs(agent, frames, actions, rtg, window_start)
    assert (got - expected).abs().max() < 1e-5


def test_codec_and_action_embedding_follow_the_arm(fixture):
    """Fourier arm: bins in joystick order, and the action table is permuted to match (same function)."""
    config, _ = fixture
    sd = _load("reference_fourier_state_dict.pt")
    agent = from_reference_state_dict(sd, **config)
    assert agent.codec.order.tolist() == ALE_FROM_JOYSTICK
    assert torch.equal(agent.action_embed.weight, sd["action_embeddings.0.weight"][ALE_FROM_JOYSTICK])
    linear = from_reference_state_dict(_load("reference_linear_state_dict.pt"), **config)
    assert linear.codec.order.tolist() == list(range(18)) and linear.head.proj.bias is None


def test_bad_reference_input_is_named(fixture):
    config, _ = fixture
    sd = _load("reference_linear_state_dict.pt")
    with pytest.raises(ValueError, match="needs n_head"):
        from_reference_state_dict(sd)
    with pytest.raises(ValueError, match=r"n_layer=3 does not match the state_dict, which has n_layer=2"):
        from_reference_state_dict(sd, **{**config, "n_layer": 3})
    with pytest.raises(ValueError, match="has no head"):
        from_reference_state_dict({k: v for k, v in sd.items() if k != "head.weight"}, **config)
    with pytest.raises(ValueError, match="keys the paper's Atari DT does not"):
        from_reference_state_dict({**sd, "extra.weight": torch.zeros(1)}, **config)


# ----------------------------------------------------------------------------- initialisation


def _frame_agent(head, init, **head_params):
    cfg = AgentConfig(name="dt", embed_dim=64, n_layer=2, n_head=4, context_len=5, max_timestep=60, init=init)
    codec = make_codec(__import__("gymnasium").spaces.Discrete(18))
    torch.manual_seed(0)
    return build_agent(cfg, head=head, head_params=head_params, state_shape=(4, 84, 84), codec=codec)


@pytest.mark.parametrize("head", ["linear", "fourier"])
def test_reference_init_reproduces_the_papers_initial_distributions(head):
    """The fixture's parameters are the reference model at initialisation (its position tables aside)."""
    sd = _load(f"reference_{head}_state_dict.pt")
    agent = _frame_agent(head, "reference", **({"bias": False} if head == "linear" else {}))
    params = {name: p.detach() for name, p in agent.named_parameters()}
    ref_head = "head.weight" if head == "linear" else "head.fc_extract_autocorrelation_params.weight"
    pairs = {"head.proj.weight": ref_head, "state_encoder.convs.0.weight": "state_encoder.0.weight",
             "state_encoder.convs.4.bias": "state_encoder.4.bias", "state_encoder.proj.weight": "state_encoder.7.weight",
             "return_embed.weight": "ret_emb.0.weight", "return_embed.bias": "ret_emb.0.bias",
             "action_embed.weight": "action_embeddings.0.weight", "blocks.1.attn.proj.weight": "blocks.1.attn.proj.weight",
             "blocks.0.mlp.2.weight": "blocks.0.mlp.2.weight"}
    for ours, theirs in pairs.items():
        assert float(params[ours].std()) == pytest.approx(float(sd[theirs].std()), rel=0.25), (ours, theirs)
    assert float(params["head.proj.weight"].std()) == pytest.approx(0.02, rel=0.15)  # the /100 is overwritten
    if head == "fourier":
        assert torch.count_nonzero(params["head.proj.bias"]) == 0
    else:
        assert "head.proj.bias" not in params  # head.bias: false
    assert torch.count_nonzero(params["timestep_embed.weight"]) == 0
    for name in ("blocks.0.attn.qkv.bias", "blocks.0.mlp.0.bias", "ln_f.bias"):
        assert torch.count_nonzero(params[name]) == 0


def test_default_init_is_unchanged():
    """``gpt2`` (the default): GPT-2 scaled residual init, N(0, 0.02) encoder, and the Fourier head's /100."""
    params = {name: p.detach() for name, p in _frame_agent("fourier", "gpt2").named_parameters()}
    assert float(params["head.proj.weight"].std()) < 0.002  # PyTorch default / 100
    assert float(params["blocks.0.attn.proj.weight"].std()) == pytest.approx(0.02 / math.sqrt(4), rel=0.15)
    assert float(params["state_encoder.proj.weight"].std()) == pytest.approx(0.02, rel=0.15)
    assert float(params["timestep_embed.weight"].std()) == pytest.approx(0.02, rel=0.15)


# ----------------------------------------------------------------------------- timestep embedding


def test_window_start_vs_per_step_embedding():
    torch.manual_seed(0)
    codec = make_codec(__import__("gymnasium").spaces.Discrete(5))
    agents = {}
    for kind in ("per_step", "window_start"):
        cfg = AgentConfig(name="dt", embed_dim=32, n_layer=2, n_head=2, context_len=4, max_timestep=50, dropout=0.0,
                          timestep_embedding=kind)
        agents[kind] = build_agent(cfg, head="linear", state_shape=(3,), codec=codec).eval()
    agents["window_start"].load_state_dict(agents["per_step"].state_dict())  # same parameters
    with torch.no_grad():
        agents["per_step"].timestep_embed.weight.normal_(0, 1.0)  # make timesteps matter
        agents["window_start"].timestep_embed.weight.copy_(agents["per_step"].timestep_embed.weight)
    B, T = 3, 4
    states, bins, rtg = torch.randn(B, T, 3), torch.randint(0, 5, (B, T, 1)), torch.randn(B, T)
    steps = torch.tensor([[7, 8, 9, 10], [0, 1, 2, 3], [30, 31, 32, 33]])
    run = lambda kind, t: agents[kind](states, bins, rtg, t).log_probs  # noqa: E731

    # window_start reads timesteps[:, 0] only, and adds its embedding to every token: the same as
    # per_step with every step given the window's first timestep.
    shifted = steps.clone()
    shifted[:, 1:] += 5
    assert torch.equal(run("window_start", steps), run("window_start", shifted))
    assert torch.allclose(run("window_start", steps), run("per_step", steps[:, :1].expand(B, T)), atol=1e-6)
    assert not torch.allclose(run("window_start", steps), run("window_start", steps + 1))
    # per_step embeds each step's own timestep
    assert not torch.allclose(run("per_step", steps), run("per_step", shifted))
    assert not torch.allclose(run("per_step", steps), run("window_start", steps))


def test_regulariser_matches_the_papers_uncounted_value(fixture):
    """The paper computes gamma * 2 * mean(sum_k 2 pi^2 k^2 |r_k|^2) over all 3T tokens (and never adds it to its
    loss); fh_rl's Fourier head gives the same number from the same hidden states."""
    from fh_rl.heads import build_head

    config, batch = fixture
    agent = from_reference_state_dict(_load("reference_fourier_state_dict.pt"), **config)
    hidden = {}
    handle = agent.ln_f.register_forward_hook(lambda module, args, out: hidden.setdefault("x", out))
    T = batch["actions"].shape[1]
    with torch.no_grad():
        agent(batch["frames"], agent.action_bins(batch["actions"]), batch["returns_to_go"],
              batch["window_start"][:, None] + torch.arange(T))
    handle.remove()
    head = build_head("fourier", config["n_embd"], 18, num_frequencies=config["fourier_num_frequencies"],
                      regularization_gamma=config["fourier_regularization_gamma"])
    head.load_state_dict(agent.head.state_dict())
    with torch.no_grad():
        reg = head.regularization(head.coefficients(hidden["x"]))  # (B, 3T, D): every token, as the paper
    assert float(reg) == pytest.approx(float(batch["regularization_fourier"]), rel=1e-4)
    assert float(agent(batch["frames"], agent.action_bins(batch["actions"]), batch["returns_to_go"],
                       batch["window_start"][:, None] + torch.arange(T)).regularization) == 0.0  # gamma 0, as it trains
