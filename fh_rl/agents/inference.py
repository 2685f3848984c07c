"""Inference: a trained agent acting in environments, as the rollout workers' :class:`fh_rl.envs.policy.Policy`.

:class:`AgentPolicy` adapts an agent to the rollout protocol. Each live
episode (slot) keeps its own context: the last T states, chosen actions (as
the head scores them: bins, or values in [-1, 1]), returns-to-go and
timesteps. Every ``act`` is one batched model call over all
live slots (contexts right-aligned, left padding masked). An agent with
``encode_states`` (the Decision Transformer) gets each new state encoded once,
and the slot keeps the embeddings: the Nature CNN then sees one frame stack
per episode and step instead of the whole context's (``cache_states``). After
each step the slot's return-to-go is decremented by the reward in dataset
units (``transformed``: e.g. clipped for DQN-Replay) or by the raw reward
(``raw``, the DT paper's code).

How an action is read from the head's output is the policy's decoding
(:mod:`fh_rl.heads.decoding`: ``argmax``, ``sample``, ``mean``, ``median``,
``mode``, ``+within_bin``). A decoding that gives a value rather than a bin
(``mean``, ``median``, ``mode`` of a head that scores bins) acts with that
value, and the DT's context records the bin the value falls in.

Two options reproduce the papers' evaluation code (``configs/atari/seaquest-paper.yaml``):
``timesteps="current"`` gives every step of the context the current step's
timestep (that code indexes its timestep table with the current step, while
training used each window's first step), and ``integer_rtg`` truncates the
returns-to-go fed to the model to integers (that code casts them to int64).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import torch

from fh_rl.agents.base import Agent
from fh_rl.agents.encoders import FRAME_STACK
from fh_rl.datasets.trajectory import transform_reward
from fh_rl.heads.decoding import DecodeContext, Decoder, parse_decoder

RTG_MODES = ("transformed", "raw")
TIMESTEP_MODES = ("own", "current")


class _Slot:
    __slots__ = ("states", "actions", "rtg", "timesteps", "frames", "return_to_go", "t")

    def __init__(self, context: int, target_return: float) -> None:
        self.states: deque = deque(maxlen=context)
        self.actions: deque = deque(maxlen=context)
        self.rtg: deque = deque(maxlen=context)
        self.timesteps: deque = deque(maxlen=context)
        self.frames: deque = deque(maxlen=FRAME_STACK)
        self.return_to_go = float(target_return)
        self.t = 0


class AgentPolicy:
    """Drives an :class:`Agent` through the rollout protocol.

    Args:
        agent: a trained agent (put in eval mode here).
        target_return: the DT's initial return-to-go, in dataset units
            (raw-score units with ``rtg_mode="raw"``). Ignored by non-sequence agents.
        device: where the agent runs.
        decode: how the action is read from the head's output: a registered decoding's name
            (``argmax``, ``sample``, ``mean``, ``median``, ``mode``, optionally ``+within_bin``) or a
            :class:`~fh_rl.heads.decoding.Decoder`; a ValueError here when it does not apply to the agent's
            head and actions (:mod:`fh_rl.heads.decoding`).
        sample: the old spelling: True is ``decode="sample"``, False ``decode="argmax"`` (not with ``decode``).
        rtg_mode: ``transformed`` or ``raw`` (see the module docstring).
        seed: seeds action sampling and within-bin draws.
        timesteps: ``own`` (each context step carries its own timestep, as in
            training) or ``current`` (all carry the current step's: the papers' code).
        integer_rtg: feed returns-to-go truncated to integers (the papers' code).
        cache_states: keep each state's embedding rather than re-encoding the context every step
            (agents with ``encode_states``); the same actions up to float rounding.
    """

    def __init__(
        self,
        agent: Agent,
        *,
        target_return: float = 0.0,
        device: torch.device | str = "cpu",
        decode: str | Decoder | None = None,
        sample: bool | None = None,
        rtg_mode: str = "transformed",
        seed: int = 0,
        timesteps: str = "own",
        integer_rtg: bool = False,
        cache_states: bool = True,
    ) -> None:
        if rtg_mode not in RTG_MODES:
            raise ValueError(f"rtg_mode must be one of {RTG_MODES}, got {rtg_mode!r}")
        if timesteps not in TIMESTEP_MODES:
            raise ValueError(f"timesteps must be one of {TIMESTEP_MODES}, got {timesteps!r}")
        self.timesteps = timesteps
        self.integer_rtg = bool(integer_rtg)
        self.agent = agent.eval()
        self.device = torch.device(device)
        self.agent.to(self.device)
        self.target_return = float(target_return)
        if decode is not None and sample is not None:
            raise TypeError("give decode= or its old spelling sample=, not both")
        if decode is None:
            decode = "argmax" if sample is False else "sample"
        self.decoder = parse_decoder(decode)
        self.decoder.check(agent.head, agent.codec)  # one line, before any episode runs
        self.rtg_mode = rtg_mode
        self.context = agent.context_len if agent.sequence_model else 1
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.slots: dict[int, _Slot] = {}
        self.action_dtype = torch.empty(0, dtype=agent.head.action_dtype).numpy().dtype  # int64 bins or float32
        self.cache_states = bool(cache_states) and agent.sequence_model and hasattr(agent, "encode_states")
        self.state_dtype = np.uint8 if agent.is_frames else np.float32  # what the model reads

    # ------------------------------------------------------------------ Policy protocol

    def begin(self, slots: np.ndarray, observations: np.ndarray) -> None:
        for slot in np.asarray(slots).tolist():
            self.slots[slot] = _Slot(self.context, self.target_return)

    def act(self, slots: np.ndarray, observations: np.ndarray) -> np.ndarray:
        h = self.next_hidden(slots, observations)  # (n, D)
        head, codec = self.agent.head, self.agent.codec
        with torch.no_grad():
            out = head(h)  # the head's output, leading shape (n,)
            chosen = self.decoder(DecodeContext(head, out, h, codec, self.generator)).cpu().numpy()  # (n, A)
        if head.scores == "continuous":  # values in [-1, 1], which the head also reads back
            context, env_actions = chosen, self.agent.decode_actions(chosen)
        elif np.issubdtype(chosen.dtype, np.integer):  # bins
            context = chosen
            env_actions = codec.decode(chosen, rng=self.rng, within_bin=self.decoder.within_bin)
        else:  # a value on the codec's [-1, 1] scale: act with it; the context gets the bin it falls in
            env_actions = codec.from_unit(chosen)
            context = codec.encode(env_actions)
        for slot, a in zip(np.asarray(slots).tolist(), context, strict=True):
            self.slots[slot].actions[-1] = a
        return np.asarray(env_actions)

    @property
    def sample(self) -> bool:
        """Whether actions are drawn at random (the decoding's ``random``)."""
        return self.decoder.random

    def head_output(self, slots: np.ndarray, observations: np.ndarray) -> Any:
        """Add this step's observation to each slot's context and return the head's output for the slots' next
        actions (leading shape ``(n,)``): what :meth:`act` chooses from."""
        h = self.next_hidden(slots, observations)
        with torch.no_grad():
            return self.agent.head(h)

    def next_hidden(self, slots: np.ndarray, observations: np.ndarray) -> torch.Tensor:
        """Add this step's observation to each slot's context and return the hidden states ``(n, D)`` the head
        reads for the slots' next actions (:meth:`head_output` without the head)."""
        slots = np.asarray(slots).tolist()
        observations = np.asarray(observations)
        A = self.agent.action_dims
        missing = [slot for slot in slots if slot not in self.slots]
        if missing:
            raise ValueError(f"slots {missing} have no episode: call begin(slots, observations) when an episode "
                             f"starts, before act")
        live = [self.slots[slot] for slot in slots]
        new_states = [self._state(s, obs) for s, obs in zip(live, observations, strict=True)]
        if self.cache_states:  # encode only the new states; the slots keep (D,) embeddings
            states = np.stack(new_states).astype(self.state_dtype, copy=False)
            with torch.no_grad():
                embedded = self.agent.encode_states(torch.from_numpy(states).to(self.device))
            new_states = list(embedded)
        for s, state in zip(live, new_states, strict=True):
            s.states.append(state)
            s.actions.append(np.zeros(A, dtype=self.action_dtype))  # the action being chosen; unseen by its own prediction
            s.rtg.append(math.trunc(s.return_to_go) if self.integer_rtg else s.return_to_go)
            s.timesteps.append(s.t)
        states, *rest = self._context_batch(live)
        with torch.no_grad():
            if self.cache_states:
                return self.agent.next_hidden(None, *rest, state_embeddings=states)  # (n, D)
            return self.agent.next_hidden(states, *rest)  # (n, D)

    def observe(self, slots: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        rewards = np.asarray(rewards, dtype=np.float64)
        if self.rtg_mode == "transformed":
            rewards = transform_reward(rewards, self.agent.reward_transform)
        for slot, reward, done in zip(np.asarray(slots).tolist(), rewards, np.asarray(dones), strict=True):
            if done:
                self.slots.pop(slot, None)
                continue
            s = self.slots[slot]
            s.return_to_go -= float(reward)
            s.t += 1

    # ------------------------------------------------------------------ helpers

    def _state(self, slot: _Slot, obs: np.ndarray) -> np.ndarray:
        """One model state from an observation: frame stacks are kept as given or built from single frames."""
        shape = self.agent.state_shape
        if obs.shape == shape:
            return obs
        if self.agent.is_frames and obs.shape == shape[1:]:
            if not slot.frames:
                slot.frames.extend(np.zeros_like(obs) for _ in range(FRAME_STACK - 1))
            slot.frames.append(obs)
            return np.stack(slot.frames)
        raise ValueError(f"observation of shape {obs.shape} does not match the agent's state shape {shape}")

    def _context_batch(self, slots: list[_Slot]) -> tuple[torch.Tensor, ...]:
        """Right-aligned contexts of the slots: states (n, T, ...) (with ``cache_states``: their embeddings
        (n, T, D)), actions (n, T, A), rtg (n, T), timesteps, mask."""
        n, T, A = len(slots), max(len(s.states) for s in slots), self.agent.action_dims
        if self.cache_states:
            first = slots[0].states[0]
            states = torch.zeros((n, T, first.shape[-1]), dtype=first.dtype, device=first.device)
        else:
            states = np.zeros((n, T, *self.agent.state_shape), dtype=self.state_dtype)
        actions = np.zeros((n, T, A), dtype=self.action_dtype)
        rtg = np.zeros((n, T), dtype=np.float32)
        timesteps = np.zeros((n, T), dtype=np.int64)
        mask = np.zeros((n, T), dtype=bool)
        for i, s in enumerate(slots):
            L = len(s.states)
            states[i, T - L :] = torch.stack(list(s.states)) if self.cache_states else np.stack(s.states)
            actions[i, T - L :] = np.stack(s.actions)
            rtg[i, T - L :] = s.rtg
            timesteps[i, T - L :] = s.timesteps
            if self.timesteps == "current":
                timesteps[i] = s.t  # every position, padding included (window_start reads position 0)
            mask[i, T - L :] = True
        to = lambda x: torch.from_numpy(x).to(self.device)  # noqa: E731
        return (states if self.cache_states else to(states)), to(actions), to(rtg), to(timesteps), to(mask)

    def config(self) -> dict[str, Any]:
        return {"target_return": self.target_return, "decode": self.decoder.name, "rtg_mode": self.rtg_mode,
                "timesteps": self.timesteps, "integer_rtg": self.integer_rtg}
