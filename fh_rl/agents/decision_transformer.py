"""Decision Transformer (Chen et al. 2021) with a pluggable action head.

Reads top to bottom: embeddings -> token interleave -> causal blocks -> head
at the state tokens. The architecture is the Atari DT's (the DT paper's code,
reused by the Fourier head paper): Nature-CNN state encoder with tanh, return
embedding linear + tanh, action embedding + tanh, a timestep embedding plus a
learned position embedding over the 3T tokens, pre-LayerNorm GPT blocks with
GELU, dropout. Vector states use a linear (or MLP) encoder with the dataset's
mean/std held in buffers.

What follows the Fourier head paper's code and what does not: by default the
timestep embedding is per step (the original DT's gym design), the init is
GPT-2's with the head's own init kept (Fourier: /100), and the loss is the
plain NLL; the paper's Atari code instead adds one timestep row (the window's
first) to every token, initialises the head N(0, 0.02) and the CNN with
PyTorch's default, and applies ``F.cross_entropy`` to the head's log-pmf.
``agent.timestep_embedding: window_start``, ``agent.init: reference`` and
``agent.loss_form: cross_entropy`` (with ``head.bias: false`` for the linear
head) give exactly the paper's function: :func:`fh_rl.agents.from_reference_state_dict`
loads its weights, and tests pin the outputs to 1e-5. docs/fidelity.md lists
every difference, evaluation protocol included.

Letters: B batch, T context timesteps, D embedding, A action dimensions,
K bins. Token order per step: (return-to-go, state, action); the action of
step t is predicted from the hidden state at the state token of step t, so
it sees R_1..R_t, s_1..s_t and a_1..a_{t-1}.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fh_rl.agents.base import INITS, LOSS_FORMS, TIMESTEP_EMBEDDINGS, Agent, AgentConfig, AgentLoss, register_agent
from fh_rl.agents.encoders import build_action_embedding, stack_frames


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout``, with a cheaper mask on CPU.

    On CPU, ``F.dropout``'s ``bernoulli_`` costs ~1.6x a uniform draw and a
    compare (measured at the DT's shapes); same distribution, another random
    stream. Elsewhere ``F.dropout`` is one fused kernel and is kept.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * (torch.rand_like(x) >= p) * (1.0 / (1.0 - p))


class Dropout(nn.Module):
    """``nn.Dropout`` through :func:`dropout`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class CausalSelfAttention(nn.Module):
    def __init__(self, embed_dim: int, n_head: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.register_buffer("causal", torch.ones(max_len, max_len, dtype=torch.bool).tril(), persistent=False)
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.dropout = dropout
        self.resid_drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # (B, L, 3D) -> 3 x (B, L, D)
        # (B, L, D) -> (B, H, L, D/H)
        q, k, v = (t.view(B, L, self.n_head, D // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        if p > 0 and x.device.type == "cpu":
            # SDPA with dropout on CPU takes its slow "math" path (safe softmax: where/all/isneginf over
            # every score); the same math written out costs ~0.8x of it.
            mask = self.causal[:L, :L] if attn_mask is None else attn_mask  # (L, L) or (B, 1, L, L)
            y = self._attention_with_dropout(q, k, v, mask, p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=attn_mask is None)
        y = y.transpose(1, 2).reshape(B, L, D)  # (B, H, L, D/H) -> (B, L, D)
        return self.resid_drop(self.proj(y))

    @staticmethod
    def _attention_with_dropout(q, k, v, attn_mask: torch.Tensor, p: float) -> torch.Tensor:
        """softmax(q k^T / sqrt(d), masked) with dropout, @ v: (B, H, L, d) -> (B, H, L, d)."""
        d = q.shape[-1]
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))  # (B, H, L, L)
        att = scores.masked_fill(~attn_mask, float("-inf")).softmax(dim=-1)  # every row keeps its diagonal
        return dropout(att, p, True) @ v


class Block(nn.Module):
    def __init__(self, embed_dim: int, n_head: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(embed_dim)
        self.attn = CausalSelfAttention(embed_dim, n_head, dropout, max_len)
        self.ln_2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, 4 * embed_dim),
            nn.GELU(),
            nn.Linear(4 * embed_dim, embed_dim),
            Dropout(dropout),
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


@register_agent("dt")
class DecisionTransformer(Agent):
    """Decision Transformer over (return-to-go, state, action) tokens; see :class:`Agent` for the args."""

    sequence_model = True

    def __init__(self, config: AgentConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        D, T = config.embed_dim, config.context_len
        if D % config.n_head != 0:
            raise ValueError(f"agent.embed_dim ({D}) must be divisible by agent.n_head ({config.n_head})")
        for name, choices in (("timestep_embedding", TIMESTEP_EMBEDDINGS), ("init", INITS), ("loss_form", LOSS_FORMS)):
            if getattr(config, name) not in choices:
                raise ValueError(f"agent.{name} must be one of {', '.join(choices)}, got {getattr(config, name)!r}")
        self.context_len = T
        self.max_timestep = config.max_timestep

        self.state_encoder = self._build_encoder(D)
        self.return_embed = nn.Linear(1, D)
        # bins: one table per action dim; continuous actions: a linear map
        self.action_embed = build_action_embedding(self.head_scores, self.action_dims, self.num_bins, D)
        self.timestep_embed = nn.Embedding(config.max_timestep + 1, D)
        self.pos_embed = nn.Parameter(torch.zeros(1, 3 * T, D))
        self.drop = Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(D, config.n_head, config.dropout, 3 * T) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(D)
        if config.init == "gpt2":
            self.apply(self._init_weights)
            for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
                if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
            # The head is built last so its own initialisation (e.g. Fourier's /100) is kept.
            self.head = self._build_head(D)
        else:  # "reference": what the paper's Atari code ends up with
            self.head = self._build_head(D)
            for module in (*self.blocks, self.ln_f, self.head, self.action_embed):
                module.apply(self._init_weights)  # the head's own init (Fourier's /100) is overwritten
            nn.init.zeros_(self.timestep_embed.weight)  # a zero-initialised parameter there
            # state_encoder and return_embed keep PyTorch's default init (built after the paper's init pass)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        returns_to_go: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> Any:
        """The head's output for the action at every step of the window.

        Args:
            states: (B, T, *state_shape) (frames as stacked uint8).
            actions: (B, T, A) the actions taken, as the head scores them
                (``encode_actions``: int64 bins, or floats in [-1, 1] for a
                continuous head). The last step's is never seen by its own
                prediction; pass anything.
            returns_to_go: (B, T) in dataset units (divided by ``rtg_scale`` here).
            timesteps: (B, T) int64 step index within the episode (with
                ``timestep_embedding: window_start`` only ``timesteps[:, 0]`` is read:
                left padding carries timestep 0, which is the first real step's).
            mask: (B, T) bool, True at real steps; None means all real.

        Returns:
            The head's output with leading shape (B, T): a HeadOutput with
            log_probs (B, T, A, K) for heads that score bins.
        """
        return self.head(self.hidden_states(states, actions, returns_to_go, timesteps, mask))

    def hidden_states(
        self,
        states: torch.Tensor | None,
        actions: torch.Tensor,
        returns_to_go: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        state_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The transformer's output (B, T, D) at the state tokens, the head's input; args as :meth:`forward`.

        ``state_embeddings`` (B, T, D): the states already through :meth:`encode_states` (then ``states``
        is not read): what an acting policy keeps, so that each state is encoded once per episode.
        """
        if returns_to_go.dim() != 2:
            raise ValueError(f"returns_to_go must have shape (B, T), got {tuple(returns_to_go.shape)}")
        B, T = returns_to_go.shape
        if T > self.context_len:
            raise ValueError(f"context of {T} steps exceeds agent.context_len = {self.context_len}")
        D = self.config.embed_dim
        if state_embeddings is not None:
            if tuple(state_embeddings.shape) != (B, T, D):
                raise ValueError(f"state_embeddings must have shape ({B}, {T}, {D}), got {tuple(state_embeddings.shape)}")
        elif states is None or tuple(states.shape) != (B, T, *self.state_shape):
            raise ValueError(
                f"states must have shape ({B}, {T}, {', '.join(map(str, self.state_shape))}), "
                f"got {None if states is None else tuple(states.shape)}"
            )
        if actions.shape != (B, T, self.action_dims):
            raise ValueError(f"actions must have shape ({B}, {T}, {self.action_dims}), got {tuple(actions.shape)}")

        # Embeddings, each (B, T, D).
        state_emb = self.state_encoder(states) if state_embeddings is None else state_embeddings
        rtg_emb = torch.tanh(self.return_embed((returns_to_go.float() / self.rtg_scale).unsqueeze(-1)))
        action_emb = torch.tanh(self.action_embed(actions))  # (B, T, A) -> (B, T, D)
        if self.config.timestep_embedding == "per_step":
            time_emb = self.timestep_embed(timesteps.clamp(0, self.max_timestep)).unsqueeze(2)  # (B, T, 1, D)
        else:  # window_start: one vector per window, added to all 3T tokens
            time_emb = self.timestep_embed(timesteps[:, 0].clamp(0, self.max_timestep))[:, None, None]  # (B, 1, 1, D)

        # Interleave: (B, T, 3, D) -> (B, 3T, D) as R_1, s_1, a_1, R_2, ...
        tokens = torch.stack([rtg_emb, state_emb, action_emb], dim=2) + time_emb
        x = self.drop(tokens.reshape(B, 3 * T, D) + self.pos_embed[:, : 3 * T])

        attn_mask = None if mask is None else self._attention_mask(mask)
        for block in self.blocks:
            x = block(x, attn_mask)
        x = self.ln_f(x)

        return x.view(B, T, 3, D)[:, :, 1]  # (B, 3T, D) -> (B, T, D) at the state tokens

    @staticmethod
    def _attention_mask(mask: torch.Tensor) -> torch.Tensor | None:
        """(B, T) step mask -> (B, 1, 3T, 3T) causal mask that hides padding keys, or None without padding.

        Every token may attend to itself, so padding rows are never empty (no NaN).
        """
        if bool(mask.all()):
            return None  # plain causal attention (lets SDPA take its fastest path)
        B, T = mask.shape
        L = 3 * T
        keys = mask.repeat_interleave(3, dim=1)  # (B, T) -> (B, 3T)
        causal = torch.ones(L, L, dtype=torch.bool, device=mask.device).tril()
        eye = torch.eye(L, dtype=torch.bool, device=mask.device)
        return ((causal & keys[:, None, :]) | eye).unsqueeze(1)  # (B, 1, 3T, 3T)

    def loss(self, batch) -> AgentLoss:
        """The head's loss of the dataset's actions at real steps (e.g. cross-entropy of the bins), plus its regulariser."""
        if batch.actions.dim() < 2:
            raise ValueError(f"DecisionTransformer expects a WindowBatch with actions (B, T[, A]), got {tuple(batch.actions.shape)}")
        T = batch.actions.shape[1]
        states = stack_frames(batch.states, T) if self.is_frames else batch.states
        targets = self.encode_actions(batch.actions)  # (B, T, A): bins or values in [-1, 1]
        out = self(states, targets, batch.returns_to_go, batch.timesteps, batch.mask)
        return self._loss(out, targets, batch.actions, batch.mask)

    def next_action(
        self,
        states: torch.Tensor | None,
        actions: torch.Tensor,
        returns_to_go: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor,
        *,
        state_embeddings: torch.Tensor | None = None,
    ) -> Any:
        """The head's output (leading shape (B,)) for the next action of right-aligned contexts (left padding masked).

        ``state_embeddings``: as :meth:`hidden_states`.
        """
        return self.head(self.next_hidden(states, actions, returns_to_go, timesteps, mask, state_embeddings=state_embeddings))

    def next_hidden(
        self,
        states: torch.Tensor | None,
        actions: torch.Tensor,
        returns_to_go: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor,
        *,
        state_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The hidden state (B, D) the head reads for the next action (:meth:`next_action` without the head)."""
        hidden = self.hidden_states(states, actions, returns_to_go, timesteps, mask, state_embeddings=state_embeddings)
        return hidden[:, -1]  # (B, T, D) -> (B, D): the newest state token

    def encode_states(self, states: torch.Tensor) -> torch.Tensor:
        """(n, *state_shape) states -> (n, D): the state tokens' embeddings, as :meth:`hidden_states` makes them."""
        if tuple(states.shape[1:]) != self.state_shape:
            raise ValueError(f"states must have shape (n, {', '.join(map(str, self.state_shape))}), got {tuple(states.shape)}")
        return self.state_encoder(states)
