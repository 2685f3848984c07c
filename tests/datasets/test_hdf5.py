"""D4RL-layout HDF5 read/write and local Minari datasets, with real HDF5 files."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from fh_rl.datasets import Episode, TrajectoryDataset, load_hdf5, load_minari, write_hdf5


def _ds(continuous=True, frames=False):
    rng = np.random.default_rng(0)
    eps = []
    for i, T in enumerate((5, 9, 3)):
        obs = rng.integers(0, 255, (T, 84, 84), dtype=np.uint8) if frames else rng.normal(size=(T, 3)).astype(np.float32)
        act = rng.normal(size=(T, 2)).astype(np.float32) if continuous else rng.integers(0, 4, size=T)
        eps.append(Episode(obs, act, rng.normal(size=T).astype(np.float32), terminated=i == 0, truncated=i != 0))
    return TrajectoryDataset(eps, frame_stack=4 if frames else 1, name="toy")


@pytest.mark.parametrize("continuous, frames", [(True, False), (False, True)])
def test_round_trip(tmp_path, continuous, frames):
    ds = _ds(continuous, frames)
    path = write_hdf5(tmp_path / "d.hdf5", ds, metadata={"env": "Toy-v0"})
    with h5py.File(path) as f:
        assert f["observations"].compression == "gzip"
        assert set(f) >= {"observations", "actions", "rewards", "terminals", "timeouts"}
        assert f["metadata"].attrs["env"] == "Toy-v0"
    back = load_hdf5(path)
    assert back.content_hash() == ds.content_hash()
    assert back.terminated.tolist() == [True, False, False] and back.truncated.tolist() == [False, True, True]
    assert [f.name for f in tmp_path.iterdir()] == ["d.hdf5"], "no temp file left behind"


def test_d4rl_file_without_timeouts_and_trailing_rows(tmp_path):
    path = tmp_path / "d4rl.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.arange(20, dtype=np.float32).reshape(10, 2)
        f["actions"] = np.ones((10, 1), np.float32)
        f["rewards"] = np.ones(10, np.float32)
        f["terminals"] = np.array([0, 0, 1, 0, 0, 0, 1, 0, 0, 0], bool)
    ds = load_hdf5(path)
    assert np.array_equal(ds.offsets, [0, 3, 7, 10])
    assert ds.terminated.tolist() == [True, True, False] and ds.truncated.tolist() == [False, False, True]
    assert ds.action_dims == 1 and not ds.is_discrete


def test_missing_key_and_bad_file(tmp_path):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((4, 2), np.float32)
        f["actions"] = np.zeros((4, 1), np.float32)
        f["terminals"] = np.zeros(4, bool)
    with pytest.raises(ValueError, match=r"bad\.hdf5: missing dataset 'rewards'"):
        load_hdf5(path)
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"junk\.hdf5: not a readable HDF5 file"):
        load_hdf5(junk)
    with pytest.raises(FileNotFoundError, match="no HDF5 file"):
        load_hdf5(tmp_path / "absent.hdf5")


def test_failed_write_keeps_existing_file(tmp_path):
    path = write_hdf5(tmp_path / "d.hdf5", _ds())
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_hdf5(path, _ds(), metadata={"bad": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["d.hdf5"]


def test_local_minari_dataset(tmp_path):
    root = tmp_path / "hopper-medium-v0"
    (root / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with h5py.File(root / "data" / "main_data.hdf5", "w") as f:
        for i, (T, term) in enumerate(((4, True), (6, False))):
            g = f.create_group(f"episode_{i}")
            g["observations"] = rng.normal(size=(T + 1, 3))
            g["actions"] = rng.normal(size=(T, 2)).astype(np.float32)
            g["rewards"] = np.ones(T)
            g["terminations"] = np.array([False] * (T - 1) + [term])
            g["truncations"] = np.array([False] * (T - 1) + [not term])
    ds = load_minari(root)
    assert np.array_equal(ds.offsets, [0, 4, 10]) and ds.terminated.tolist() == [True, False]
    assert ds.observations.dtype == np.float32 and ds.action_dims == 2


def test_minari_id_without_minari_gives_install_hint():
    pytest.importorskip("h5py")
    try:
        import minari  # noqa: F401

        pytest.skip("minari is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match=r'pip install "fh_rl\[minari\]"'):
        load_minari("mujoco/hopper/medium-v0")
