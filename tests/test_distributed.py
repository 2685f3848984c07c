"""Data-parallel training: sharded sampling, and a real 2-process gloo run under torchrun vs 1 process."""

import subprocess

import numpy as np
import pytest
import torch

from fh_rl.datasets.sampling import TransitionSampler, WindowSampler
from fh_rl.distributed import SINGLE, check_batch_size, global_step
from fh_rl.trainer import load_checkpoint
from tests.agents.synthetic import synthetic_dataset
from tests.tiny_run import PYTHON, child_env, write_tiny_config


@pytest.mark.parametrize("P", [2, 4])
def test_shards_partition_the_global_batch(P):
    ds = synthetic_dataset("box", episodes=20)
    full = WindowSampler(ds, 4, 8, seed=3)
    shards = [WindowSampler(ds, 4, 8, seed=3, shard=(r, P)) for r in range(P)]
    for _ in range(3):
        whole = full.sample()
        parts = [s.sample() for s in shards]
        assert all(len(p) == 8 // P for p in parts)
        for name in ("states", "actions", "returns_to_go", "timesteps", "mask"):
            assert torch.equal(torch.cat([getattr(p, name) for p in parts]), getattr(whole, name)), name
    assert all(s.state_dict() == full.state_dict() for s in shards)  # one sampler state serves every rank
    t_full, t_half = TransitionSampler(ds, 6, seed=1), TransitionSampler(ds, 6, seed=1, shard=(1, 2))
    assert torch.equal(t_full.sample().states[3:], t_half.sample().states)


def test_global_batch_must_divide_by_processes():
    assert check_batch_size(8, 2) == 4
    with pytest.raises(ValueError, match=r"train.batch_size 10 is the global batch .* divisible by the number of processes \(4\).*batch_size=8"):
        check_batch_size(10, 4)
    with pytest.raises(ValueError, match="divisible by world_size 3"):
        WindowSampler(synthetic_dataset("box"), 4, 8, shard=(0, 3))
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        TransitionSampler(synthetic_dataset("box"), 8, shard=(2, 2))


def test_single_process_global_step_is_the_local_loss():
    g = global_step(torch.tensor(7), torch.tensor(2.5), torch.tensor(0.25), False, SINGLE)
    assert (g.weight, g.tokens, g.loss, g.stop) == (1.0, 7, 2.75, False)


def _scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return np.array([s.value for s in acc.Scalars(tag)])


def _files(root):
    return sorted(str(p.relative_to(root).as_posix()).split("/", 3)[-1] for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("head", ["fourier", "gaussian", "mse"])
def test_two_gloo_processes_match_one_process(tmp_path, pendulum_hdf5, head):
    config = write_tiny_config(tmp_path, pendulum_hdf5)
    common = ["--config", str(config), "--head", head, "--no-eval", "--no-progress"]
    env = child_env()
    two = subprocess.run(
        [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "fh_rl.train",
         *common, "--set", f"run_root={tmp_path / 'two'}"], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([PYTHON, "-m", "fh_rl.train", *common, "--set", f"run_root={tmp_path / 'one'}"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]

    # Only rank 0 wrote: one run directory with one event file, the same files as the 1-process run.
    (run_two,) = (tmp_path / "two").glob("*/*/*")
    (run_one,) = (tmp_path / "one").glob("*/*/*")
    assert len(list(run_two.glob("events.out.tfevents.*"))) == 1
    assert [f.split(".")[0] for f in _files(run_two)] == [f.split(".")[0] for f in _files(run_one)]
    assert two.stderr.count("run directory:") == 1

    # Same global batches, token-weighted loss: the same run up to float rounding.
    loss_one, loss_two = _scalars(run_one, "train/loss"), _scalars(run_two, "train/loss")
    assert len(loss_one) == 6 and np.allclose(loss_one, loss_two, rtol=1e-5, atol=1e-6), (loss_one, loss_two)
    objective = {"fourier": "nll", "gaussian": "nll_density", "mse": "mse"}[head]
    for tag in (f"train/{objective}", f"val/{objective}", "val/accuracy"):
        assert np.allclose(_scalars(run_one, tag), _scalars(run_two, tag), rtol=1e-5), tag
    a, b = load_checkpoint(run_one), load_checkpoint(run_two)
    assert a["schedule"] == b["schedule"] and a["step"] == b["step"] == 6
    assert a["schedule"]["tokens"] < 6 * 8 * 4  # padding: the ranks' token counts differed, the weighting mattered
    for name, p in a["model"].items():
        assert torch.allclose(p.float(), b["model"][name].float(), rtol=1e-4, atol=1e-6), name
    assert len(b["rng_ranks"]) == 2 and "rng_ranks" not in a
    manifest = (run_two / "manifest.json").read_text()
    assert '"world_size": 2' in manifest and '"backend": "gloo"' in manifest


@pytest.mark.slow
def test_torchrun_rejects_a_global_batch_it_cannot_split(tmp_path, pendulum_hdf5):
    config = write_tiny_config(tmp_path, pendulum_hdf5, batch_size=7)
    proc = subprocess.run(
        [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "fh_rl.train",
         "--config", str(config), "--no-eval", "--no-progress", "--set", f"run_root={tmp_path / 'runs'}"],
        env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "train.batch_size 7 is the global batch and must be divisible by the number of processes (2)" in proc.stderr
    assert not (tmp_path / "runs").exists()


def _trainer(run_dir, ctx, seed=0):
    from fh_rl.agents import AgentConfig, build_agent
    from fh_rl.config import TrainConfig
    from fh_rl.distributed import rank_seed
    from fh_rl.trainer import Trainer
    from tests.agents.synthetic import codec_for

    torch.manual_seed(seed)
    agent = build_agent(
        AgentConfig(name="dt", embed_dim=16, n_layer=1, n_head=2, context_len=4, max_timestep=10, dropout=0.1),
        head="fourier", head_params={"regularization_gamma": 1e-3}, state_shape=(3,), codec=codec_for("box"),
    )
    if ctx.rank:
        torch.manual_seed(rank_seed(seed, ctx.rank))  # as fh_rl.train does: distinct dropout per rank
    sampler = WindowSampler(synthetic_dataset("box", episodes=20), 4, 16, seed=seed, shard=ctx.shard)
    cfg = TrainConfig(steps=8, batch_size=16, lr=3e-3, warmup_tokens=64, checkpoint_every=3, log_every=5, val_every=10)
    return Trainer(agent, sampler, cfg, run_dir=run_dir, context_len=4, progress=False, dist=ctx)


def _resume_worker(rank, tmp, world):
    import signal

    import torch.distributed as dist

    from fh_rl.distributed import DistContext
    from tests.test_trainer import interrupt_at

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    ctx = DistContext(rank=rank, world_size=world, local_rank=rank, backend="gloo")
    try:
        full = _trainer(tmp / "full", ctx)
        full.fit()
        part = _trainer(tmp / "part", ctx)
        if rank == 1:
            interrupt_at(part, 4, signal.SIGINT)  # only rank 1 is signalled: both must stop after step 4
        result = part.fit()
        assert result.interrupted is not None and result.step == 4, result
        resumed = _trainer(tmp / "part", ctx, seed=123)  # different init: everything comes from the checkpoint
        resumed.load_state_dict(load_checkpoint(tmp / "part"))
        assert resumed.step == 4
        resumed.fit()
        for (name, a), b in zip(full.agent.state_dict().items(), resumed.agent.state_dict().values(), strict=True):
            assert torch.equal(a, b), f"rank {rank}: {name} differs after resume"
        assert full.tokens == resumed.tokens
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_resume_matches_an_uninterrupted_run(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_resume_worker, args=(tmp_path, 2), nprocs=2, join=True)
    (ckpt,) = (tmp_path / "part").rglob("*.pt")  # rank 0 alone wrote, atomically
    state = load_checkpoint(tmp_path / "part")
    assert state["step"] == 8 and len(state["rng_ranks"]) == 2
    assert sorted(p.name for p in (tmp_path / "full").rglob("*") if p.is_file()) == ["last.pt"]
