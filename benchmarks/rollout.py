"""Rollout throughput: environment steps per second.

For Atari (Seaquest, dqn-replay protocol) and MuJoCo (HalfCheetah-v5):
a single raw environment stepped in a loop; ``evaluate`` with W = 1 and 2
worker processes and a trivial (random) policy; and with a small neural
policy (Nature CNN for Atari, 2x256 MLP for MuJoCo, torch on CPU, one batched
call per step). Each evaluate setting runs ``--repeats`` times, interleaved,
and its fastest run is shown. Rates exclude worker start-up (reported
separately) and shut-down but include episode resets (an ALE reset with a seed
reloads the ROM, about 0.2 s); "model" is the policy's share of the running
time. "cpu us/step" is the CPU time of this process and its workers per env
step, start-up included: when W = 2 costs about what W = 1 does, the parallel
overhead is small and two idle cores give close to 2x. Other processes on the
machine skew the wall-clock ratios; the load average is printed.

    PYTHONPATH=. python benchmarks/rollout.py            # about a minute on 2 cores
    PYTHONPATH=. python benchmarks/rollout.py --envs-per-worker 8
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import torch
from torch import nn

from fh_rl.envs import RandomPolicy, evaluate, make_env

CASES = {
    # env name -> (episode cap in agent steps, raw-loop steps, default envs per worker E)
    "Seaquest": (500, 2000, 4),
    "HalfCheetah-v5": (500, 10000, 16),
}


class TorchPolicy:
    """A small network choosing actions for a batch of observations (argmax / tanh)."""

    def __init__(self, net: nn.Module, discrete: bool) -> None:
        self.net = net.eval()
        self.discrete = discrete

    def begin(self, slots, observations):
        pass

    @torch.inference_mode()
    def act(self, slots, observations):
        x = torch.from_numpy(np.asarray(observations)).float()
        if self.discrete:
            x = x / 255.0
        out = self.net(x)
        return out.argmax(-1).numpy() if self.discrete else torch.tanh(out).numpy()

    def observe(self, slots, rewards, dones):
        pass


def neural_policy(env) -> TorchPolicy:
    space = env.action_space
    if hasattr(space, "n"):  # Nature CNN over (4, 84, 84) frames
        net = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, space.n),
        )  # fmt: skip
        return TorchPolicy(net, discrete=True)
    obs_dim, act_dim = env.observation_space.shape[0], space.shape[0]
    net = nn.Sequential(nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, act_dim))
    return TorchPolicy(net, discrete=False)


def cpu_seconds() -> float:
    """CPU time of this process and its finished (waited-for) children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def raw_rate(name: str, steps: int) -> tuple[float, float]:
    env = make_env(name)
    rng = np.random.default_rng(0)
    actions = [env.action_space.sample() for _ in range(256)]
    env.reset(seed=0)
    start, cpu0 = time.perf_counter(), cpu_seconds()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[int(rng.integers(256))])
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start), (cpu_seconds() - cpu0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs-per-worker", type=int, default=None, help="environments E per worker (default: per env)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting; the fastest is shown")
    parser.add_argument("--envs", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    torch.set_num_threads(1)  # leave the other core to the workers
    load = os.getloadavg()[0]
    print(f"cores: {len(os.sched_getaffinity(0))}, load average before: {load:.1f}, torch threads: {torch.get_num_threads()}")
    header = (f"{'env':<15} {'setting':<22} {'W':>2} {'E':>3} {'steps':>7} {'steps/s':>9} {'vs W=1':>7} {'model':>6} "
              f"{'start s':>7} {'cpu us/step':>11}")
    print(header)
    print("-" * len(header))
    for name in args.envs:
        cap, raw_steps, E = CASES[name]
        E = args.envs_per_worker or E
        rate, cpu = raw_rate(name, raw_steps)
        print(f"{name:<15} {'raw env, 1 process':<22} {'-':>2} {'-':>3} {raw_steps:>7} {rate:>9.0f} "
              f"{'':>7} {'':>6} {'':>7} {1e6 * cpu:>11.0f}")  # fmt: skip
        env = make_env(name)
        for label, make_policy in (("random policy", lambda env=env: RandomPolicy(env.action_space, 0)),
                                   ("neural policy", lambda env=env: neural_policy(env))):  # fmt: skip
            best: dict[int, object] = {}
            for _ in range(args.repeats):  # interleaved; keep each W's fastest run
                for W in (1, 2):
                    cpu0 = cpu_seconds()
                    result = evaluate(
                        make_policy(), name, episodes=W * E, workers=W, envs_per_worker=E,
                        env_kwargs={"max_episode_steps": cap}, progress=False,
                    )  # fmt: skip
                    result.cpu_per_step = (cpu_seconds() - cpu0) / result.steps
                    if W not in best or result.steps_per_second > best[W].steps_per_second:
                        best[W] = result
            for W, result in best.items():
                rate = result.steps_per_second
                share = result.policy_seconds / result.run_seconds
                print(
                    f"{name:<15} {label:<22} {W:>2} {E:>3} {result.steps:>7} {rate:>9.0f} "
                    f"{rate / best[1].steps_per_second:>6.2f}x {100 * share:>5.1f}% {result.startup_seconds:>7.1f} {1e6 * result.cpu_per_step:>11.0f}"
                )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
