"""A tiny env that crashes, hangs or kills its process on request (rollout error tests).

Made by id ``"tests.envs.faulty_env:Faulty-v0"`` so that spawned rollout
workers import and register it themselves.
"""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np


class FaultyEnv(gym.Env):
    """Counts steps; episodes last 20 steps, reward 1 per step.

    The episode reset with seed ``fault_seed`` misbehaves at step ``fault_step``:
    ``fault="raise"`` raises, ``"hang"`` sleeps for an hour, ``"exit"`` kills the process;
    ``"init-in-worker"`` fails to build in any process but ``parent_pid``.
    """

    def __init__(self, fault: str = "raise", fault_seed: int = -1, fault_step: int = 5, parent_pid: int = -1) -> None:
        if fault == "init-in-worker" and os.getpid() != parent_pid:
            raise RuntimeError("simulated failure building the env in a worker")
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.fault, self.fault_seed, self.fault_step = fault, fault_seed, fault_step
        self.t = 0
        self.seed_ = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.seed_ = 0, seed
        return np.array([seed or 0, 0], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        if self.seed_ == self.fault_seed and self.t == self.fault_step:
            if self.fault == "raise":
                raise RuntimeError(f"simulated crash at step {self.t}")
            if self.fault == "hang":
                time.sleep(3600)
            if self.fault == "exit":
                os._exit(3)
        obs = np.array([self.seed_ or 0, self.t], dtype=np.float32)
        return obs, 1.0, self.t >= 20, False, {}


gym.register("Faulty-v0", entry_point=FaultyEnv)
