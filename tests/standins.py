"""Temporary stand-ins for fh_rl.envs.codecs / fh_rl.datasets pieces until those branches merge.

Deleted once the real modules land (see the agents branch history).
"""

from __future__ import annotations

import numpy as np
import torch


class StandInCodec:
    def __init__(self, discrete_n: int | None = None, low=None, high=None, num_bins: int = 8):
        self.discrete = discrete_n is not None
        if self.discrete:
            self.num_bins, self.action_dims = discrete_n, 1
        else:
            self.low = np.asarray(low, np.float32)
            self.high = np.asarray(high, np.float32)
            self.num_bins, self.action_dims = num_bins, len(self.low)

    def encode(self, actions):
        t = torch.as_tensor(actions)
        if self.discrete:
            return t.long().unsqueeze(-1)
        low = torch.as_tensor(self.low, device=t.device)
        high = torch.as_tensor(self.high, device=t.device)
        u = (t.float() - low) / (high - low)
        return (u * self.num_bins).floor().long().clamp(0, self.num_bins - 1)

    def decode(self, bins, rng=None):
        b = np.asarray(bins)
        if self.discrete:
            return b[..., 0].astype(np.int64)
        return (self.low + (b + 0.5) / self.num_bins * (self.high - self.low)).astype(np.float32)

    def config(self):
        if self.discrete:
            return {"kind": "discrete", "n": self.num_bins}
        return {"kind": "box", "low": self.low.tolist(), "high": self.high.tolist(), "num_bins": self.num_bins}


class StandInWindowSampler:
    """Random windows with a learnable action signal (action bin depends on the state)."""

    def __init__(self, *, batch_size=8, context_len=4, state_dim=3, codec=None, frames=False, seed=0):
        self.B, self.T, self.S = batch_size, context_len, state_dim
        self.codec, self.frames = codec, frames
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self):
        from fh_rl.datasets.batch import WindowBatch

        B, T, g = self.B, self.T, self.gen
        if self.frames:
            states = torch.randint(0, 256, (B, T + 3, 84, 84), generator=g, dtype=torch.uint8)
            signal = states[:, 3:, :8, :8].float().mean((-1, -2)) / 255.0  # (B, T) in [0, 1]
        else:
            states = torch.randn(B, T, self.S, generator=g)
            signal = torch.sigmoid(2 * states[..., 0])  # (B, T) in [0, 1]
        if self.codec.discrete:
            actions = (signal * self.codec.num_bins).long().clamp(max=self.codec.num_bins - 1)
        else:
            low = torch.as_tensor(self.codec.low)
            high = torch.as_tensor(self.codec.high)
            actions = low + signal[..., None] * (high - low)
        mask = torch.ones(B, T, dtype=torch.bool)
        pad = torch.randint(0, T, (B,), generator=g)
        mask &= torch.arange(T)[None, :] >= pad[:, None] // 2
        rtg = torch.randn(B, T, generator=g)
        timesteps = torch.arange(T).expand(B, T).clone()
        return WindowBatch(states, actions, rtg, timesteps, mask)

    def state_dict(self):
        return {"rng": self.gen.get_state()}

    def load_state_dict(self, state):
        self.gen.set_state(state["rng"])


class StandInTransitionSampler(StandInWindowSampler):
    def sample(self):
        from fh_rl.datasets.batch import TransitionBatch

        w = super().sample()
        if self.frames:
            return TransitionBatch(w.states[:, -4:], w.actions[:, -1])
        return TransitionBatch(w.states[:, -1], w.actions[:, -1])
