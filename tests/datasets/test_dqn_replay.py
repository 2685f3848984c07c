"""DQN-Replay reader, writer and subset cache, against Dopamine's own files."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fh_rl.datasets import DQNReplayWriter, load_dqn_replay
from fh_rl.datasets.dqn_replay import KEYS, file_name, replay_dir

# Written by Dopamine's own replay logger (tests/fixtures/README.md).
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dqn-replay"
TRUTH = FIXTURE / "Breakout" / "truth.npz"


@pytest.fixture(scope="module")
def truth():
    with np.load(TRUTH, allow_pickle=False) as t:
        return {k: t[k] for k in t.files}


@pytest.fixture
def fixture_copy(tmp_path):
    """A writable copy of the Dopamine fixture (the original is read-only)."""
    dst = tmp_path / "data"
    shutil.copytree(FIXTURE / "Breakout" / "1", dst / "Breakout" / "1", copy_function=shutil.copyfile)
    return dst


def _listing(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


# --------------------------------------------------------------------------- the Dopamine fixture
def test_reads_dopamine_fixture_exactly(truth, tmp_path):
    before = _listing(FIXTURE)
    ds = load_dqn_replay(FIXTURE, "Breakout", 1, progress=False, cache_dir=tmp_path)
    assert _listing(FIXTURE) == before
    assert np.array_equal(ds.observations, truth["obs"])
    assert np.array_equal(ds.actions, truth["action"].astype(np.int64))
    assert np.array_equal(ds.rewards, truth["reward"])
    assert ds.rewards.min() >= -1 and ds.rewards.max() <= 1  # stored clipped
    ends = np.flatnonzero(truth["terminal"]) + 1
    assert np.array_equal(ds.offsets, np.concatenate([[0], ends, [len(truth["action"])]]))
    assert ds.terminated.tolist() == [True] * len(ends) + [False]
    assert ds.truncated.tolist() == [False] * len(ends) + [True]
    assert ds.frame_stack == 4 and ds.state_shape == (4, 84, 84)


def test_fixture_suffix_subsets_keep_known_starts(truth):
    ends = np.flatnonzero(truth["terminal"]) + 1
    starts = np.concatenate([[0], ends])
    full = load_dqn_replay(FIXTURE, "Breakout", 1, progress=False)
    # From file 1 on: the episode whose start lies in file 0 is dropped; the rest is exact.
    ds = load_dqn_replay(FIXTURE, "Breakout", 1, suffixes=[1, 2], progress=False)
    first = int(np.searchsorted(starts, 1000 - 3))  # first episode starting after file 0's rows
    lo = starts[first]
    assert np.array_equal(ds.observations, truth["obs"][lo:])
    assert np.array_equal(ds.actions, full.actions[lo:])
    assert ds.truncated.tolist() == [False] * (len(ds) - 1) + [True]
    # A missing middle file is a gap: the episode across it is cut, not joined.
    gap = load_dqn_replay(FIXTURE, "Breakout", 1, suffixes=[0, 2], progress=False)
    cut = int(np.flatnonzero(gap.truncated)[0])
    assert not gap.terminated[cut]
    for i in range(len(gap)):
        ep = gap.episode(i)
        hit = _locate(truth["obs"], ep.observations)
        assert hit in starts, "every episode must start at a true episode start"
        assert np.array_equal(truth["obs"][hit : hit + len(ep)], ep.observations)


def _locate(frames: np.ndarray, piece: np.ndarray) -> int:
    matches = [i for i in range(len(frames) - len(piece) + 1) if np.array_equal(frames[i], piece[0]) and np.array_equal(frames[i : i + len(piece)], piece)]
    assert matches, "episode not found in the truth"
    return matches[0]


def test_writer_reproduces_dopamine_files(truth, tmp_path):
    with DQNReplayWriter(tmp_path, "Breakout", 1, capacity=int(truth["capacity"])) as w:
        for o, a, r, t in zip(truth["obs"], truth["action"], truth["reward"], truth["terminal"]):
            w.add(o, a, r, t)
    ours = replay_dir(tmp_path, "Breakout", 1)
    theirs = replay_dir(FIXTURE, "Breakout", 1)
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
    for s in range(int(truth["files"])):
        for key in KEYS:
            a = np.load(gzip.open(ours / file_name(key, s)), allow_pickle=False)
            b = np.load(gzip.open(theirs / file_name(key, s)), allow_pickle=False)
            assert a.dtype == b.dtype and a.shape == b.shape, (key, s)
            if s == 0 and a.ndim >= 1 and len(a) == truth["capacity"]:
                a, b = a[:-1], b[:-1]  # slot C-1 of file 0 was never written (np.empty garbage in Dopamine)
            assert np.array_equal(a, b), (key, s)


# --------------------------------------------------------------------------- writer round trips
def _random_run(seed: int, n_episodes: int, last_terminal: bool = False):
    """Episodes whose frames encode a unique row id (bytes 0..3 of row 0)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=n_episodes)
    total = int(lengths.sum())
    ids = np.arange(total, dtype=np.uint32)
    obs = rng.integers(0, 255, size=(total, 84, 84), dtype=np.uint8)
    obs[:, 0, :4] = ids.view(np.uint8).reshape(total, 4)
    obs[:, 1, 0] = 1  # never an all-zero frame
    actions = rng.integers(0, 18, size=total).astype(np.int32)
    rewards = rng.choice(np.array([-1.0, 0.0, 0.0, 1.0], np.float32), size=total)
    terminal = np.zeros(total, np.uint8)
    terminal[np.cumsum(lengths) - 1] = 1
    if not last_terminal:
        terminal[-1] = 0
    return obs, actions, rewards, terminal


def _write(root, capacity, run):
    obs, actions, rewards, terminal = run
    with DQNReplayWriter(root, "Pong", 1, capacity=capacity) as w:
        for row in zip(obs, actions, rewards, terminal):
            w.add(*row)
    d = replay_dir(root, "Pong", 1)
    counts = [int(np.load(gzip.open(d / file_name("add_count", s)))) for s in range(w.log_count)]
    return counts


def _ids(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frames[:, 0, :4]).view(np.uint32).reshape(-1)


def _check_invariants(ds, run):
    """Every episode is a piece of one true episode starting at its true start; terminated ones are whole."""
    obs, actions, rewards, terminal = run
    true_ends = np.flatnonzero(terminal) + 1
    true_starts = np.concatenate([[0], true_ends])
    ep_of = np.searchsorted(true_ends, np.arange(len(terminal)), side="right")
    for i in range(len(ds)):
        ep = ds.episode(i)
        ids = _ids(ep.observations)
        assert np.array_equal(ids, np.arange(ids[0], ids[0] + len(ids))), "rows must be consecutive"
        assert ids[0] in true_starts, "episodes must start at their true start"
        assert len(set(ep_of[ids])) == 1, "an episode must not join two true episodes"
        assert np.array_equal(ep.actions, actions[ids]) and np.array_equal(ep.rewards, rewards[ids])
        assert np.array_equal(ep.observations, obs[ids])
        if ep.terminated:
            assert terminal[ids[-1]] == 1 and not ep.truncated
        else:
            assert ep.truncated


@pytest.mark.parametrize("capacity, seed, last_terminal", [(50, 18, False), (97, 0, True), (200, 1, False), (1000, 0, False)])
def test_writer_round_trip_exact(tmp_path, capacity, seed, last_terminal):
    run = _random_run(seed, 60, last_terminal)
    counts = _write(tmp_path, capacity, run)
    full = [c for c in counts if c >= capacity - 1]
    assert np.all(np.diff(full) == capacity), "seed chosen so that no save is skipped (see test_skipped_save_is_a_gap)"
    assert counts[-1] < capacity or len(counts) == 1  # a final partial file
    ds = load_dqn_replay(tmp_path, "Pong", 1, progress=False, chunk_bytes=84 * 84 * 7)
    obs, actions, rewards, terminal = run
    assert np.array_equal(ds.observations, obs)
    assert np.array_equal(ds.actions, actions) and np.array_equal(ds.rewards, rewards)
    ends = np.flatnonzero(terminal) + 1
    expected = np.unique(np.concatenate([[0], ends, [len(terminal)]]))
    assert np.array_equal(ds.offsets, expected)
    assert ds.truncated[-1] == (not last_terminal)
    if capacity <= 200:
        assert len(counts) >= 4  # several full files and episodes crossing their boundaries
        file_rows = np.cumsum([capacity] * (len(counts) - 1))
        assert any(np.any((ds.offsets[:-1] < r) & (ds.offsets[1:] > r)) for r in file_rows)


def test_skipped_save_is_a_gap(tmp_path):
    # With C = 31 a 4-row add (3 padding + 1) jumps past C - 1 in some round: no file is saved then.
    for seed in range(50):
        run = _random_run(seed, 80)
        root = tmp_path / str(seed)
        counts = _write(root, 31, run)
        full = [c for c in counts if c >= 30]
        if np.any(np.diff(full) != 31):
            break
    else:
        pytest.fail("no seed produced a skipped save")
    ds = load_dqn_replay(root, "Pong", 1, progress=False)
    _check_invariants(ds, run)
    assert ds.num_transitions < len(run[0])  # rows were lost in the gap
    assert ds.truncated[:-1].any()  # the episode before the gap is cut


@pytest.mark.parametrize("suffixes", [[1, 2, 3], [0, 1, 3, 4], [2], [4]])
def test_suffix_subsets_and_missing_files_cut_episodes(tmp_path, suffixes):
    run = _random_run(5, 60)
    counts = _write(tmp_path, 150, run)
    assert len(counts) >= 5
    ds = load_dqn_replay(tmp_path, "Pong", 1, suffixes=suffixes, progress=False)
    _check_invariants(ds, run)


def test_parallel_and_chunking_do_not_change_results(tmp_path):
    run = _random_run(7, 50)
    _write(tmp_path, 120, run)
    a = load_dqn_replay(tmp_path, "Pong", 1, workers=1, progress=False, chunk_bytes=1)
    b = load_dqn_replay(tmp_path, "Pong", 1, workers=2, progress=False)
    assert a.content_hash() == b.content_hash()


def test_worker_threads_parse_npy_headers_one_at_a_time(tmp_path, monkeypatch):
    """numpy parses .npy headers with ast.literal_eval, which CPython 3.11 cannot run in two threads at once."""
    from fh_rl.datasets.dqn_replay import format as fmt

    _write(tmp_path, 120, _random_run(7, 50))
    parse, calls = np.lib.format.read_array_header_1_0, []

    def checked(fp, *args, **kwargs):
        calls.append(fmt._HEADER_LOCK.locked())
        return parse(fp, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "read_array_header_1_0", checked)
    load_dqn_replay(tmp_path, "Pong", 1, workers=2, progress=False)
    assert calls and all(calls), calls


# --------------------------------------------------------------------------- sampling + cache
def test_sampled_subset_is_exact_and_cached(tmp_path):
    run = _random_run(11, 120)
    data, cache = tmp_path / "data", tmp_path / "cache"
    _write(data, 300, run)
    before = _listing(data)
    ds = load_dqn_replay(data, "Pong", 1, max_transitions=700, seed=3, cache_dir=cache, progress=False)
    assert ds.num_transitions == 700
    _check_invariants(ds, run)
    assert _listing(data) == before, "nothing may be written next to the data"
    assert len(list((cache / "dqn_replay").iterdir())) == 1
    again = load_dqn_replay(data, "Pong", 1, max_transitions=700, seed=3, cache_dir=cache, progress=False)
    assert isinstance(again.observations, np.memmap)
    assert again.content_hash() == ds.content_hash()
    other = load_dqn_replay(data, "Pong", 1, max_transitions=700, seed=4, cache_dir=cache, progress=False)
    assert other.content_hash() != ds.content_hash()
    assert len(list((cache / "dqn_replay").iterdir())) == 2
    # A changed source file invalidates the cache.
    f = replay_dir(data, "Pong", 1) / file_name("reward", 0)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    load_dqn_replay(data, "Pong", 1, max_transitions=700, seed=3, cache_dir=cache, progress=False)
    assert len(list((cache / "dqn_replay").iterdir())) == 3


def test_paper_protocol(tmp_path):
    run = _random_run(13, 200)
    _write(tmp_path, 400, run)
    ds = load_dqn_replay(
        tmp_path, "Pong", 1, protocol="paper", max_transitions=600, num_buffers=3, trajectories_per_buffer=2,
        seed=0, cache=False, progress=False,
    )
    _check_invariants(ds, run)
    assert ds.terminated.all(), "the protocol takes complete episodes"
    assert 600 <= ds.num_transitions < 600 + 2 * 40
    n_files = len(list(replay_dir(tmp_path, "Pong", 1).glob("add_count*")))
    # Buffers are drawn among the last 3 full files only: nothing from the first files.
    first_allowed_row = 400 * (n_files - 1 - 3) - 1  # run row (padding included) where they start
    ids = _ids(ds.observations)
    ep_of = np.searchsorted(np.flatnonzero(run[3]) + 1, ids, side="right")
    run_rows = ids + 3 * (ep_of + 1)  # 3 padding rows precede every episode
    assert run_rows.min() >= first_allowed_row
    same = load_dqn_replay(tmp_path, "Pong", 1, protocol="paper", max_transitions=600, num_buffers=3,
                           trajectories_per_buffer=2, seed=0, cache=False, progress=False)
    assert same.content_hash() == ds.content_hash()


# --------------------------------------------------------------------------- errors
def test_missing_file_is_named(fixture_copy):
    (replay_dir(fixture_copy, "Breakout", 1) / file_name("reward", 1)).unlink()
    with pytest.raises(FileNotFoundError, match=r"\$store\$_reward_ckpt\.1\.gz"):
        load_dqn_replay(fixture_copy, "Breakout", 1, progress=False)


def test_empty_directory(tmp_path):
    replay_dir(tmp_path, "Breakout", 1).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no DQN-Replay checkpoint files.*fh_rl.datasets.download"):
        load_dqn_replay(tmp_path, "Breakout", 1, progress=False)
    with pytest.raises(FileNotFoundError, match=r"no DQN-Replay directory.*fh_rl.datasets.collect atari --game .*fh_rl.datasets.download"):
        load_dqn_replay(tmp_path, "Pong", 1, progress=False)


def test_truncated_gzip_is_named(fixture_copy):
    f = replay_dir(fixture_copy, "Breakout", 1) / file_name("observation", 2)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    before = _listing(fixture_copy)
    with pytest.raises(ValueError, match=r"observation_ckpt\.2\.gz: truncated"):
        load_dqn_replay(fixture_copy, "Breakout", 1, progress=False, cache=True, cache_dir=fixture_copy.parent / "c")
    assert _listing(fixture_copy) == before


def test_corrupt_gzip_is_named(fixture_copy):
    f = replay_dir(fixture_copy, "Breakout", 1) / file_name("observation", 1)
    data = bytearray(f.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    f.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"observation_ckpt\.1\.gz: corrupt"):
        load_dqn_replay(fixture_copy, "Breakout", 1, progress=False)


def test_not_gzip_is_named(fixture_copy):
    f = replay_dir(fixture_copy, "Breakout", 1) / file_name("terminal", 0)
    f.write_bytes(b"not a gzip file at all")
    with pytest.raises(ValueError, match=r"terminal_ckpt\.0\.gz: not a gzip-compressed .npy"):
        load_dqn_replay(fixture_copy, "Breakout", 1, progress=False)


@pytest.mark.parametrize(
    "key, array, match",
    [
        ("action", np.zeros(1000, np.int64), r"action_ckpt\.0\.gz: expected dtype int32, found int64"),
        ("terminal", np.zeros((1000, 2), np.uint8), r"terminal_ckpt\.0\.gz: expected shape \('C',\), found \(1000, 2\)"),
        ("observation", np.zeros((1000, 84, 80), np.uint8), r"observation_ckpt\.0\.gz: expected shape \(1000, 84, 84\)"),
        ("add_count", np.array(1234, np.int64), r"add_count_ckpt\.0\.gz: add_count 1234 is neither"),
    ],
)
def test_wrong_dtype_or_shape_is_named(fixture_copy, key, array, match):
    f = replay_dir(fixture_copy, "Breakout", 1) / file_name(key, 0)
    with gzip.open(f, "wb") as g:
        np.save(g, array, allow_pickle=False)
    with pytest.raises(ValueError, match=match):
        load_dqn_replay(fixture_copy, "Breakout", 1, progress=False)


def test_pickled_episode_end_indices_are_ignored(fixture_copy):
    f = replay_dir(fixture_copy, "Breakout", 1) / "episode_end_indices_ckpt.0.gz"
    f.write_bytes(b"\x80\x04 this would be a pickle; it must never be opened")
    ds = load_dqn_replay(fixture_copy, "Breakout", 1, progress=False)
    assert ds.num_transitions == 2600


def test_writer_refuses_existing_data_and_bad_frames(tmp_path, fixture_copy):
    with pytest.raises(FileExistsError, match="already holds DQN-Replay files"):
        DQNReplayWriter(fixture_copy, "Breakout", 1, capacity=1000)
    w = DQNReplayWriter(tmp_path, "Pong", 1, capacity=10)
    with pytest.raises(ValueError, match=r"uint8 \(84, 84\) frame"):
        w.add(np.zeros((84, 84), np.float32), 0, 0.0, False)


def test_paper_protocol_uses_file_zero_and_says_when_short(tmp_path, capsys):
    run = _random_run(13, 200)
    _write(tmp_path, 400, run)
    ds = load_dqn_replay(tmp_path, "Pong", 1, protocol="paper", max_transitions=10**6, num_buffers=50,
                         trajectories_per_buffer=3, cache=False, progress=False)
    (line,) = capsys.readouterr().err.strip().splitlines()  # one plain line, no warning with a source path
    assert line == f"note: dataset.max_transitions asks for 1,000,000 transitions; the buffers hold {ds.num_transitions:,} " \
                   "in complete episodes: using those"
    _check_invariants(ds, run)
    assert _ids(ds.observations).min() == 0, "file 0 is a full buffer too"
    assert ds.terminated.all()


def test_skipped_save_before_the_final_file(tmp_path):
    # Found by search: with C = 31 this run's last round is never saved (add_count jumps from
    # 402 past 432), so the final file's slots c..C-2 are not stale copies of the previous file.
    run = _random_run(1, 20)
    counts = _write(tmp_path, 31, run)
    assert counts[-2] == 402 and counts[-1] == 444 % 31
    ds = load_dqn_replay(tmp_path, "Pong", 1, progress=False)
    _check_invariants(ds, run)
    assert _ids(ds.observations)[-1] == len(run[0]) - 1, "the final file's newest rows are read"
    assert ds.truncated[-1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"protocol": "uniform"}, r"unknown protocol 'uniform'; choose one of"),
        ({"max_transitions": 0}, "max_transitions must be a positive int"),
        ({"protocol": "episodes"}, "protocol='episodes' needs max_transitions"),
        ({"suffixes": []}, "suffixes is empty"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dqn_replay(FIXTURE, "Breakout", 1, progress=False, **kwargs)


def test_requested_suffix_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\$store\$_observation_ckpt\.7\.gz"):
        load_dqn_replay(FIXTURE, "Breakout", 1, suffixes=[0, 7], progress=False)


def test_step_cap_episodes_are_truncated(truth):
    ends = np.flatnonzero(truth["terminal"]) + 1
    length = int(ends[1] - ends[0])  # pretend episode 1's length is the time limit
    ds = load_dqn_replay(FIXTURE, "Breakout", 1, time_limit=length, progress=False)
    assert ds.episode_lengths[1] == length and ds.truncated[1] and not ds.terminated[1]
    assert ds.terminated[0] and ds.terminated[2]


def test_padding_rows_are_checked(fixture_copy):
    f = replay_dir(fixture_copy, "Breakout", 1) / file_name("action", 0)
    actions = np.load(gzip.open(f), allow_pickle=False)
    actions[1] = 3  # slot 1 of file 0 is one of the run's first 3 padding rows
    with gzip.open(f, "wb") as g:
        np.save(g, actions, allow_pickle=False)
    with pytest.raises(ValueError, match=r"action_ckpt\.0\.gz: slot 1 should be a padding row"):
        load_dqn_replay(fixture_copy, "Breakout", 1, progress=False)


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_stream_select_block_and_direct_paths_equal_np_load(chunk_rows):
    from fh_rl.datasets.dqn_replay.format import stream_select

    path = FIXTURE / "Breakout" / "1" / "replay_logs" / file_name("observation", 1)
    with gzip.open(path) as f:
        full = np.load(f, allow_pickle=False)  # (C, 84, 84)
    C = len(full)
    # a run of whole consecutive rows (direct decompression / block copies), a gap, then scattered rows
    slots = np.concatenate([np.arange(0, 300), np.arange(310, 320), np.arange(400, C - 1, 37)])
    out_rows = np.concatenate([np.arange(5, 305), np.arange(400, 410), 320 + np.arange(len(slots) - 310)[::-1]])
    out = np.full((420, 84, 84), 7, np.uint8)
    stream_select(path, C, slots, out, out_rows, chunk_rows * 84 * 84)
    np.testing.assert_array_equal(out[out_rows], full[slots])
    untouched = np.setdiff1d(np.arange(420), out_rows)
    assert (out[untouched] == 7).all()
