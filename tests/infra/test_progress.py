"""Progress output: a plain line per interval when the output is a log, rates with sensible precision."""

import io
import time

from fh_rl import train as train_cli
from fh_rl.infra.cli import run_cli
from fh_rl.infra.progress import LineProgress, format_rate, progress_bar


def test_rates_keep_three_significant_digits():
    assert [format_rate(x) for x in (0.01234, 0.4, 4.567, 45.67, 4567.8)] == ["0.0123", "0.4", "4.57", "45.7", "4568"]


def test_log_progress_is_plain_lines_at_the_interval():
    buf = io.StringIO()
    assert isinstance(progress_bar(total=3, file=io.StringIO()), LineProgress)  # a StringIO is not a terminal
    start = time.perf_counter()
    bar = progress_bar(total=40, desc="train", unit="step", file=buf, mininterval=0.05)
    for _ in range(40):
        time.sleep(0.005)
        bar.update(1)
        bar.set_postfix(loss="0.5")  # never prints by itself
    bar.close()
    elapsed = time.perf_counter() - start
    text = buf.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "" not in lines
    assert lines[0].startswith("train: 0/40") and lines[-1].startswith("train: 40/40 (100%)")
    assert 3 <= len(lines) <= min(elapsed / 0.05 + 2, 20)  # one line per 0.05 s at most, not one per update (40)
    assert "step/s" in lines[-1] and "loss=0.5" in lines[-1]


def test_train_progress_into_a_log_has_no_carriage_returns(tmp_path, pendulum_hdf5, capfd):
    sets = ["agent.embed_dim=16", "agent.n_layer=1", "agent.n_head=2", "agent.context_len=4", "train.batch_size=8",
            "train.steps=6", "train.log_every=2", "train.val_every=6", "train.val_batches=1", "train.pmf_states=0",
            "dataset.val_fraction=0.25", f"dataset.path={pendulum_hdf5}", f"run_root={tmp_path / 'runs'}"]
    assert run_cli(train_cli.main, [a for s in sets for a in ("--set", s)] + ["--no-eval"]) == 0
    err = capfd.readouterr().err
    assert "\r" not in err
    train_lines = [line for line in err.splitlines() if line.startswith("train: ")]
    assert train_lines[0].startswith("train: 0/6") and train_lines[-1].startswith("train: 6/6 (100%)")
    assert len(train_lines) <= 3 and "samples_per_s=" in train_lines[-1]
