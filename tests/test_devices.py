"""Training and acting on every available device (CPU here; CUDA too where there is one).

``benchmarks/device_check.sh`` runs this file on a CUDA machine: the GPU path
(bf16 autocast, channels-last frames, pinned-memory prefetch, torch.compile,
batched policy calls) is checked against the CPU in the same test.
"""

import numpy as np
import pytest
import torch

from fh_rl.agents import AgentConfig, build_agent
from fh_rl.agents.inference import AgentPolicy
from fh_rl.config import TrainConfig
from fh_rl.datasets.sampling import WindowSampler
from fh_rl.trainer import Trainer, load_checkpoint
from tests.agents.synthetic import codec_for, synthetic_dataset

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def frames_agent(head="fourier", dropout=0.1):
    torch.manual_seed(0)
    cfg = AgentConfig(name="dt", embed_dim=32, n_layer=2, n_head=4, context_len=4, max_timestep=20, dropout=dropout)
    params = {"regularization_gamma": 1e-6} if head == "fourier" else {}
    return build_agent(cfg, head=head, head_params=params, state_shape=(4, 84, 84), codec=codec_for("frames"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("head", ["linear", "fourier"])
def test_frames_forward_matches_cpu_and_training_steps_change_parameters(tmp_path, device, head):
    agent = frames_agent(head, dropout=0.0)
    batch = WindowSampler(synthetic_dataset("frames", episodes=6), 4, 8, seed=1).sample()
    with torch.no_grad():
        cpu = agent.loss(batch).log_probs
        dev = agent.to(device).loss(batch.to(device)).log_probs.cpu()
    torch.testing.assert_close(dev, cpu, rtol=1e-3, atol=1e-3)  # TF32/cuDNN on GPU: not bit-equal

    agent = frames_agent(head)
    before = [p.detach().clone() for p in agent.parameters()]
    sampler = WindowSampler(synthetic_dataset("frames", episodes=6), 4, 8, seed=1)
    cfg = TrainConfig(steps=3, batch_size=8, checkpoint_every=2, log_every=1, val_every=10, device=device, amp=True)
    trainer = Trainer(agent, sampler, cfg, run_dir=tmp_path, context_len=4, device=device, progress=False)
    result = trainer.fit()
    assert result.step == 3 and np.isfinite(result.train_loss)
    assert all(not torch.equal(b, a.detach().cpu()) for b, a in zip(before, agent.parameters(), strict=True))
    state = load_checkpoint(tmp_path)
    # the checkpoint's sampler state is after exactly 3 batches, prefetching or not
    fresh = WindowSampler(synthetic_dataset("frames", episodes=6), 4, 8, seed=1)
    for _ in range(3):
        fresh.sample()
    assert state["sampler"] == fresh.state_dict()


@pytest.mark.parametrize("device", DEVICES)
def test_batched_policy_calls_on_device(device):
    agent = frames_agent()
    policy = AgentPolicy(agent, target_return=3.0, device=device, seed=0)
    slots = np.arange(6)
    frames = np.random.default_rng(0).integers(0, 255, (6, 84, 84), dtype=np.uint8)
    policy.begin(slots, frames)
    for _ in range(5):  # past the context length: contexts are truncated to T
        actions = policy.act(slots, frames)
        assert actions.shape == (6,) and ((0 <= actions) & (actions < 6)).all()
        policy.observe(slots, np.ones(6), np.zeros(6, dtype=bool))
