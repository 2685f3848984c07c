import os
import signal

import pytest
import torch

from fh_rl.agents import AgentConfig, build_agent
from fh_rl.config import TrainConfig
from fh_rl.datasets.sampling import WindowSampler
from fh_rl.trainer import BatchStream, Trainer, TrainingDiverged, load_checkpoint, lr_multiplier, parameter_groups
from tests.agents.synthetic import codec_for, synthetic_dataset


def make_trainer(tmp_path, steps=20, seed=0, head="fourier", **train_kwargs):
    torch.manual_seed(seed)
    codec = codec_for("box")
    agent = build_agent(
        AgentConfig(name="dt", embed_dim=16, n_layer=1, n_head=2, context_len=4, max_timestep=10, dropout=0.1),
        head=head,
        head_params={"regularization_gamma": 1e-6} if head == "fourier" else {},
        state_shape=(3,),
        codec=codec,
    )
    sampler = WindowSampler(synthetic_dataset("box", episodes=20), 4, 16, seed=seed)
    val = [WindowSampler(synthetic_dataset("box", seed=99), 4, 16, seed=99).sample()]
    cfg = TrainConfig(steps=steps, batch_size=16, lr=3e-3, warmup_tokens=64, checkpoint_every=7, log_every=5, val_every=10, **train_kwargs)
    return Trainer(agent, sampler, cfg, run_dir=tmp_path, context_len=4, val_batches=val, progress=False, checkpoint_extra={"config": {"x": 1}})


def test_parameter_groups_decay_only_matmul_weights(tmp_path):
    agent = make_trainer(tmp_path).agent
    decay, no_decay = parameter_groups(agent, 0.1)
    names = {id(p): n for n, p in agent.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "blocks.0.attn.qkv.weight" in decayed and "head.proj.weight" in decayed
    assert "return_embed.weight" in decayed  # a linear layer, decayed as in the paper's code
    for name in ("pos_embed", "timestep_embed.weight", "action_embed.weight", "ln_f.weight", "head.proj.bias"):
        assert name not in decayed
    assert not any(n.endswith("bias") or ".ln_" in n for n in decayed), decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(agent.parameters()))


def test_lr_schedule_warmup_then_cosine_to_floor():
    assert lr_multiplier(50, 100, 1000, 0.1) == pytest.approx(0.5)
    assert lr_multiplier(100, 100, 1000, 0.1) == pytest.approx(1.0)
    assert lr_multiplier(550, 100, 1000, 0.1) == pytest.approx(0.5)
    assert lr_multiplier(1000, 100, 1000, 0.1) == pytest.approx(0.1)
    assert lr_multiplier(5000, 100, 1000, 0.1) == pytest.approx(0.1)


def test_schedule_fractions_scale_with_the_run(tmp_path):
    long = make_trainer(tmp_path / "a", steps=40, warmup_fraction=0.1, final_fraction=0.9)
    short = make_trainer(tmp_path / "b", steps=20, warmup_fraction=0.1, final_fraction=0.9)
    assert (long.warmup_tokens, long.final_tokens) == (256, 2304)  # of 40 steps * 16 windows * 4 steps
    assert (short.warmup_tokens, short.final_tokens) == (128, 1152)  # half the run: half the warmup and decay
    fixed = make_trainer(tmp_path / "c", steps=20)
    assert (fixed.warmup_tokens, fixed.final_tokens) == (64, 1280)  # warmup_tokens, and the run's end
    with pytest.raises(ValueError, match="warmup_fraction.*below train.final_fraction"):
        TrainConfig(warmup_fraction=0.5, final_fraction=0.4)


def test_short_training_reduces_the_loss(tmp_path):
    trainer = make_trainer(tmp_path, steps=40)
    first = trainer.validate()["nll"]
    result = trainer.fit()
    assert result.step == 40 and result.interrupted is None
    assert result.val_metrics["nll"] < first - 0.3, (first, result.val_metrics)
    assert 0 <= result.val_metrics["accuracy"] <= 1 and result.val_metrics["smoothness"] > 0


def test_resume_reaches_identical_parameters(tmp_path):
    full = make_trainer(tmp_path / "full", steps=20)
    full.fit()
    part = make_trainer(tmp_path / "part", steps=20)
    interrupt_at(part, 14, signal.SIGINT)  # the same run, stopped by Ctrl-C after step 14
    assert part.fit().interrupted == "SIGINT"
    resumed = make_trainer(tmp_path / "resumed", steps=20, seed=123)  # different init: all state comes from the checkpoint
    torch.manual_seed(555)
    resumed.load_state_dict(load_checkpoint(tmp_path / "part"))
    assert resumed.step == 14
    resumed.fit()
    for (name, a), b in zip(full.agent.state_dict().items(), resumed.agent.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert full.tokens == resumed.tokens


def test_checkpoint_loads_with_weights_only(tmp_path):
    trainer = make_trainer(tmp_path, steps=3)
    trainer.fit()
    path = tmp_path / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    assert state["step"] == 3 and state["config"] == {"x": 1}
    assert set(state) >= {"model", "optimizer", "schedule", "rng", "sampler", "format"}
    assert not [p for p in path.parent.iterdir() if p.name != "last.pt"]  # no temp files left


def test_nan_loss_stops_with_clear_message_and_keeps_last_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, steps=20)
    real_sample = trainer.sampler.sample
    calls = {"n": 0}

    def poisoned():
        calls["n"] += 1
        batch = real_sample()
        if calls["n"] == 10:
            batch.states[:] = float("nan")
        return batch

    trainer.sampler.sample = poisoned
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 10 .*last good checkpoint is .*last.pt"):
        trainer.fit()
    state = load_checkpoint(tmp_path)
    assert state["step"] == 7
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def interrupt_at(trainer, step, sig):
    real_sample = trainer.sampler.sample
    calls = {"n": 0}

    def sample():
        calls["n"] += 1
        if calls["n"] == step:
            os.kill(os.getpid(), sig)
        return real_sample()

    trainer.sampler.sample = sample


def test_sigterm_writes_checkpoint_and_stops(tmp_path):
    trainer = make_trainer(tmp_path, steps=50)
    interrupt_at(trainer, 4, signal.SIGTERM)
    result = trainer.fit()
    assert result.interrupted == "SIGTERM" and result.step == 4
    assert load_checkpoint(tmp_path)["step"] == 4
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint .* not found"):
        load_checkpoint(tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(bad)


def test_batch_stream_prefetch_keeps_the_sampler_order_and_exact_state():
    ds = synthetic_dataset("box", episodes=10)
    reference = WindowSampler(ds, 4, 8, seed=3)
    expected = [reference.sample() for _ in range(5)]
    sampler = WindowSampler(ds, 4, 8, seed=3)
    stream = BatchStream(sampler, "cpu", prefetch=True)
    assert not stream.prefetch  # a no-op on CPU ...
    stream.prefetch = True  # ... but the background thread's bookkeeping is device-independent: exercise it here
    for want in expected[:3]:
        torch.testing.assert_close(stream.next().actions, want.actions)
    # the checkpointed state is the one before the prefetched (not yet handed out) batch
    resumed = WindowSampler(ds, 4, 8, seed=0)
    resumed.load_state_dict(stream.sampler_state())
    torch.testing.assert_close(resumed.sample().actions, expected[3].actions)
    stream.close()  # un-draws the prefetched batch
    torch.testing.assert_close(sampler.sample().actions, expected[3].actions)


@pytest.mark.slow  # inductor compiles C++ for a minute or more
def test_compiled_training_step_matches_eager(tmp_path):
    losses = {}
    for compiled in (False, True):
        trainer = make_trainer(tmp_path / str(compiled), steps=2, compile=compiled)
        for block in trainer.agent.blocks:  # no dropout: compiled code draws its random numbers differently
            block.attn.dropout = 0.0
            block.attn.resid_drop.p = block.mlp[3].p = 0.0
        trainer.agent.drop.p = 0.0
        trainer.fit()
        losses[compiled] = [p.detach().clone() for p in trainer.agent.parameters()]
    for eager, comp in zip(losses[False], losses[True], strict=True):
        torch.testing.assert_close(comp, eager, rtol=1e-4, atol=1e-5)
