"""The paper's Atari Decision Transformer as its code computes it (minGPT's ``model_atari.py``), for timing only.

A transcription of the reference implementation's modules and forward, op for
op where it matters for speed: separate key/query/value layers, an explicit
masked softmax with attention dropout, ``nn.Dropout``/``nn.GELU``, the Nature
CNN on float input already divided by 255 (the reference's data loader does
that, outside the timed step), interleaving by slice assignment into a zero
tensor, and the global position table repeated over the batch and gathered
every forward. Linear head without bias, ``F.cross_entropy`` loss. Used by
``benchmarks/train.py --vs-reference``; fh_rl's own parity with that model is
tested in ``tests/agents``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _Attention(nn.Module):
    def __init__(self, D: int, n_head: int, block_size: int, dropout: float) -> None:
        super().__init__()
        self.key, self.query, self.value = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.attn_drop, self.resid_drop = nn.Dropout(dropout), nn.Dropout(dropout)
        self.proj = nn.Linear(D, D)
        self.register_buffer("mask", torch.tril(torch.ones(block_size + 1, block_size + 1)).view(1, 1, block_size + 1, block_size + 1))
        self.n_head = n_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        k = self.key(x).view(B, L, self.n_head, D // self.n_head).transpose(1, 2)
        q = self.query(x).view(B, L, self.n_head, D // self.n_head).transpose(1, 2)
        v = self.value(x).view(B, L, self.n_head, D // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:, :, :L, :L] == 0, float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(B, L, D)
        return self.resid_drop(self.proj(y))


class _Block(nn.Module):
    def __init__(self, D: int, n_head: int, block_size: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attn = _Attention(D, n_head, block_size, dropout)
        self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ReferenceDT(nn.Module):
    """The reference GPT for Atari: ``loss(states, actions, rtgs, timesteps, targets)``.

    states: (B, T, 4*84*84) float32 in [0, 1]; actions, targets: (B, T) int64;
    rtgs: (B, T) float32; timesteps: (B, 1) int64 (the window's first step).
    """

    def __init__(self, *, vocab: int = 18, D: int = 128, n_layer: int = 6, n_head: int = 8, context_len: int = 30,
                 max_timestep: int = 3000, dropout: float = 0.1) -> None:
        super().__init__()
        block_size = 3 * context_len
        self.pos_emb = nn.Parameter(torch.zeros(1, block_size + 1, D))
        self.global_pos_emb = nn.Parameter(torch.zeros(1, max_timestep + 1, D))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[_Block(D, n_head, block_size, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(D)
        self.head = nn.Linear(D, vocab, bias=False)
        self.apply(self._init_weights)
        self.state_encoder = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4, padding=0), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=0), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1, padding=0), nn.ReLU(),
            nn.Flatten(), nn.Linear(3136, D), nn.Tanh(),
        )
        self.ret_emb = nn.Sequential(nn.Linear(1, D), nn.Tanh())
        self.action_embeddings = nn.Sequential(nn.Embedding(vocab, D), nn.Tanh())
        nn.init.normal_(self.action_embeddings[0].weight, mean=0.0, std=0.02)
        self.D = D

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    def loss(self, states, actions, rtgs, timesteps, targets) -> torch.Tensor:
        B, T = actions.shape
        state_embeddings = self.state_encoder(states.reshape(-1, 4, 84, 84).type(torch.float32).contiguous())
        state_embeddings = state_embeddings.reshape(B, T, self.D)
        rtg_embeddings = self.ret_emb(rtgs.unsqueeze(-1).type(torch.float32))
        action_embeddings = self.action_embeddings(actions.type(torch.long))
        token_embeddings = torch.zeros((B, T * 3, self.D), dtype=torch.float32, device=states.device)
        token_embeddings[:, ::3, :] = rtg_embeddings
        token_embeddings[:, 1::3, :] = state_embeddings
        token_embeddings[:, 2::3, :] = action_embeddings
        all_global_pos_emb = torch.repeat_interleave(self.global_pos_emb, B, dim=0)  # (B, max_timestep + 1, D)
        position_embeddings = torch.gather(all_global_pos_emb, 1, torch.repeat_interleave(timesteps[:, :, None], self.D, dim=-1))
        position_embeddings = position_embeddings + self.pos_emb[:, : token_embeddings.shape[1], :]
        x = self.drop(token_embeddings + position_embeddings)
        x = self.ln_f(self.blocks(x))
        logits = self.head(x)[:, 1::3, :]
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
