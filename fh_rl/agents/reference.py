"""Load the Fourier head paper's Atari Decision Transformer into fh_rl.

The paper (Gillman et al. 2024) trains a minGPT Decision Transformer
(``model_type="reward_conditioned"``); :func:`from_reference_state_dict` turns
a ``state_dict()`` of that model into an fh_rl :class:`DecisionTransformer` in
its ``reference`` variant (window-start timestep embedding, the paper's init,
its cross-entropy form), with the same outputs: the probabilities of
``agent(frames, agent.action_bins(actions), returns_to_go, window_start[:, None] + arange(T))``
in eval mode are the reference model's (``tests/agents/test_reference.py`` pins
this to 1e-5 on the paper's own numbers and on random models of other sizes).

Parameter names of the reference model and where they go:

=====================================================  ===========================================
reference                                              fh_rl
=====================================================  ===========================================
``state_encoder.{0,2,4}`` (convs), ``state_encoder.7``  ``state_encoder.convs.{0,2,4}``, ``state_encoder.proj``
``ret_emb.0``                                          ``return_embed``
``action_embeddings.0`` (rows: ALE action ids)         ``action_embed`` (rows: the codec's bins)
``global_pos_emb`` (1, max_timestep + 1, D)            ``timestep_embed.weight``
``pos_emb`` (1, 3T + 1, D; the last row unused)        ``pos_embed`` (1, 3T, D)
``blocks.i.attn.{query,key,value}``                    ``blocks.i.attn.qkv`` (stacked q, k, v)
``blocks.i.{ln1,ln2,attn.proj,mlp.0,mlp.2}``            ``blocks.i.{ln_1,ln_2,attn.proj,mlp.0,mlp.2}``
``ln_f``                                               ``ln_f``
``head.weight`` (K, D), no bias                        linear head ``head.proj`` (``bias=False``)
``head.fc_extract_autocorrelation_params``             Fourier head ``head.proj`` (same layout)
=====================================================  ===========================================

``tok_emb`` and the attention masks are not used by the reference model's
forward and are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from fh_rl.agents.base import AgentConfig
from fh_rl.agents.decision_transformer import DecisionTransformer

FOURIER_KEY = "head.fc_extract_autocorrelation_params.weight"
IGNORED = re.compile(r"tok_emb\.weight|blocks\.\d+\.attn\.mask")
STATE_SHAPE = (4, 84, 84)


def _ale_action_meanings() -> list[str]:
    import ale_py

    return [a.name for a in ale_py.Action]  # the 18 ALE actions in id order


def _need(state_dict: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"reference state_dict has no {key!r}: expected a state_dict() of the paper's Atari DT")
    return state_dict[key]


def _check(name: str, given: Any, found: int) -> int:
    if given is not None and int(given) != found:
        raise ValueError(f"{name}={given} does not match the state_dict, which has {name}={found}")
    return found


def from_reference_state_dict(state_dict: Mapping[str, torch.Tensor], **config: Any) -> DecisionTransformer:
    """A :class:`DecisionTransformer` equal to the paper's Atari DT with these parameters.

    Args:
        state_dict: ``state_dict()`` of the reference model (load it with
            ``torch.load(path, weights_only=True)``). The head is recognised from its keys.
        **config: the reference's settings: ``n_head`` (required: it is not in the
            weights), and optionally ``n_layer``, ``n_embd``, ``context_len``,
            ``max_timestep``, ``num_actions``, ``fourier_num_frequencies``, which are
            checked against the weights. Others (``batch``, ``seed``,
            ``fourier_regularization_gamma``, ...) are ignored: the reference
            computes its regulariser but never adds it to its loss, so the
            returned agent's head has gamma 0.

    Returns:
        The agent in eval mode, with ``agent.config`` = window-start timestep
        embedding, ``reference`` init and the ``cross_entropy`` loss form, raw
        returns-to-go (``rtg_scale`` 1) and clipped dataset rewards. Its codec
        maps ALE action ids to bins: in joystick order for the Fourier head (the
        paper's Fourier arm), in ALE order for the linear head (its linear arm).

    Raises:
        ValueError: a key is missing or unexpected, or a setting contradicts the weights.
    """
    import gymnasium as gym

    from fh_rl.envs.codecs import make_codec

    if "n_head" not in config:
        raise ValueError("from_reference_state_dict needs n_head (the number of attention heads), e.g. n_head=8")
    n_head = int(config["n_head"])
    pos = _need(state_dict, "pos_emb")
    D = _check("n_embd", config.get("n_embd"), pos.shape[-1])
    if (pos.shape[1] - 1) % 3:
        raise ValueError(f"pos_emb has {pos.shape[1]} rows; the reference has 3T + 1")
    T = _check("context_len", config.get("context_len"), (pos.shape[1] - 1) // 3)
    max_timestep = _check("max_timestep", config.get("max_timestep"), _need(state_dict, "global_pos_emb").shape[1] - 1)
    K = _check("num_actions", config.get("num_actions"), _need(state_dict, "action_embeddings.0.weight").shape[0])
    n_layer = _check("n_layer", config.get("n_layer"),
                     len({int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}))
    if K != len(_ale_action_meanings()):
        raise ValueError(f"the reference has {K} actions; the paper's Atari DT uses all 18 ALE actions (its reindexing assumes them)")
    if D % n_head:
        raise ValueError(f"n_head={n_head} does not divide n_embd={D}")

    if FOURIER_KEY in state_dict:
        head = "fourier"
        N = _check("fourier_num_frequencies", config.get("fourier_num_frequencies"), state_dict[FOURIER_KEY].shape[0] // 2 - 1)
        head_params: dict[str, Any] = {"num_frequencies": N, "regularization_gamma": 0.0}
        ordering = "joystick"
    elif "head.weight" in state_dict:
        head, head_params, ordering = "linear", {"bias": False}, "identity"
    else:
        raise ValueError(f"reference state_dict has no head: expected {FOURIER_KEY!r} (Fourier) or 'head.weight' (linear)")

    codec = make_codec(gym.spaces.Discrete(K), ordering=ordering, action_meanings=_ale_action_meanings())
    agent_config = AgentConfig(
        name="dt", embed_dim=D, n_layer=n_layer, n_head=n_head, dropout=0.1, context_len=T, max_timestep=max_timestep,
        timestep_embedding="window_start", init="reference", loss_form="cross_entropy",
    )
    agent = DecisionTransformer(
        agent_config, state_shape=STATE_SHAPE, codec=codec, head=head, head_params=head_params,
        rtg_scale=1.0, reward_transform="clip",
    )

    ours: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        used.add(key)
        return _need(state_dict, key)

    for i, j in ((0, "convs.0"), (2, "convs.2"), (4, "convs.4"), (7, "proj")):
        for p in ("weight", "bias"):
            ours[f"state_encoder.{j}.{p}"] = take(f"state_encoder.{i}.{p}")
    for p in ("weight", "bias"):
        ours[f"return_embed.{p}"] = take(f"ret_emb.0.{p}")
        ours[f"ln_f.{p}"] = take(f"ln_f.{p}")
    order = torch.as_tensor(codec.order)  # (K,) bin -> ALE id
    ours["action_embed.weight"] = take("action_embeddings.0.weight")[order]
    ours["timestep_embed.weight"] = take("global_pos_emb")[0]
    ours["pos_embed"] = take("pos_emb")[:, : 3 * T]
    for b in range(n_layer):
        for p in ("weight", "bias"):
            ours[f"blocks.{b}.ln_1.{p}"] = take(f"blocks.{b}.ln1.{p}")
            ours[f"blocks.{b}.ln_2.{p}"] = take(f"blocks.{b}.ln2.{p}")
            ours[f"blocks.{b}.attn.qkv.{p}"] = torch.cat([take(f"blocks.{b}.attn.{n}.{p}") for n in ("query", "key", "value")])
            ours[f"blocks.{b}.attn.proj.{p}"] = take(f"blocks.{b}.attn.proj.{p}")
            ours[f"blocks.{b}.mlp.0.{p}"] = take(f"blocks.{b}.mlp.0.{p}")
            ours[f"blocks.{b}.mlp.2.{p}"] = take(f"blocks.{b}.mlp.2.{p}")
    if head == "fourier":
        ours["head.proj.weight"] = take(FOURIER_KEY)
        ours["head.proj.bias"] = take("head.fc_extract_autocorrelation_params.bias")
    else:
        ours["head.proj.weight"] = take("head.weight")

    unexpected = sorted(k for k in state_dict if k not in used and not IGNORED.fullmatch(k))
    if unexpected:
        raise ValueError(f"reference state_dict has keys the paper's Atari DT does not: {unexpected[:5]}")
    ours["rtg_scale"] = agent.rtg_scale
    for name, value in ours.items():
        if value.dtype != torch.float32 and value.is_floating_point():
            ours[name] = value.float()
    try:
        agent.load_state_dict(ours, strict=True)
    except RuntimeError as exc:  # a shape that contradicts the settings
        raise ValueError(f"reference state_dict does not fit the model it describes: {' '.join(str(exc).split())[:300]}") from None
    return agent.eval()
