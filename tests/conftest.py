import gymnasium as gym
import numpy as np
import pytest
import torch

# Tiny models: one intra-op thread is fastest, and avoids oversubscribing shared CI cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pendulum_hdf5(tmp_path_factory):
    """8 short Pendulum-v1 episodes of a random policy, written with the project's HDF5 writer."""
    from fh_rl.datasets import Episode, TrajectoryDataset, write_hdf5

    env = gym.make("Pendulum-v1")
    env.action_space.seed(0)
    episodes = []
    for i in range(8):
        obs, _ = env.reset(seed=i)
        states, actions, rewards = [], [], []
        for _ in range(25):
            a = env.action_space.sample()
            states.append(obs)
            actions.append(a)
            obs, r, *_ = env.step(a)
            rewards.append(r)
        episodes.append(Episode(np.array(states, np.float32), np.array(actions, np.float32),
                                np.array(rewards, np.float32), False, True))
    path = tmp_path_factory.mktemp("data") / "pendulum-tiny.hdf5"
    write_hdf5(path, TrajectoryDataset(episodes, name="pendulum-tiny"))
    return path
