"""Write DQN-Replay files exactly as Dopamine's logged replay buffer does (for collection and tests)."""

from __future__ import annotations

import gzip
import os
from contextlib import ExitStack
from typing import Any

import numpy as np

from fh_rl.infra.atomic import atomic_path
from fh_rl.datasets.dqn_replay.format import FRAME_SHAPE, KEYS, PADDING, discover_suffixes, file_name, replay_dir


class DQNReplayWriter:
    """Writes the layout Dopamine's ``OutOfGraphLoggedReplayBuffer`` writes.

    ``add`` follows Dopamine's replay buffer: before the first row and after
    every terminal row it writes 3 padding rows (zero frame, action 0, reward
    0, not terminal) together with the row, all in one add; after an add that
    leaves ``add_count % C == C - 1`` the whole buffer is saved as the next
    suffix. ``close`` saves the final partial file with ``add_count`` set to
    the cursor (as ``log_final_buffer`` does). Rewards are stored as given
    (Dopamine's agents store clipped rewards). Each file is written to a
    temporary name in the same directory and renamed into place.

    Args:
        root: data root; files go to ``<root>/<game>/<run>/replay_logs``.
        game: game directory name.
        run: run number.
        capacity: C, rows per file (1,000,000 in the published data).
    """

    def __init__(self, root: str | os.PathLike, game: str, run: int, capacity: int = 1_000_000) -> None:
        if not isinstance(capacity, int) or capacity < PADDING + 2:
            raise ValueError(f"capacity must be an int >= {PADDING + 2}, got {capacity!r}")
        self.directory = replay_dir(root, game, run)
        if self.directory.is_dir() and discover_suffixes(self.directory):
            raise FileExistsError(f"{self.directory} already holds DQN-Replay files; write to an empty directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.capacity = capacity
        self.add_count = 0
        self.log_count = 0
        self._store = {
            "observation": np.zeros((capacity, *FRAME_SHAPE), np.uint8),
            "action": np.zeros(capacity, np.int32),
            "reward": np.zeros(capacity, np.float32),
            "terminal": np.zeros(capacity, np.uint8),
        }
        self._closed = False

    def cursor(self) -> int:
        return self.add_count % self.capacity

    def _add_row(self, observation: Any, action: int, reward: float, terminal: bool) -> None:
        c = self.cursor()
        self._store["observation"][c] = observation
        self._store["action"][c] = action
        self._store["reward"][c] = reward
        self._store["terminal"][c] = terminal
        self.add_count += 1

    def add(self, observation: np.ndarray, action: int, reward: float, terminal: bool) -> None:
        """Append one step (an 84x84 uint8 frame, its action, reward, and terminal flag)."""
        if self._closed:
            raise ValueError("DQNReplayWriter is closed")
        obs = np.asarray(observation)
        if obs.shape != FRAME_SHAPE or obs.dtype != np.uint8:
            raise ValueError(f"observation must be a uint8 {FRAME_SHAPE} frame, got {obs.dtype} {obs.shape}")
        if self.add_count == 0 or self._store["terminal"][self.cursor() - 1] == 1:
            for _ in range(PADDING):
                self._add_row(0, 0, 0.0, False)
        self._add_row(obs, int(action), float(reward), bool(terminal))
        if self.cursor() == self.capacity - 1:
            self._save(self.add_count)

    def _invalid_range(self) -> np.ndarray:
        # Dopamine's invalid_range(cursor, C, stack_size=4, update_horizon=1)
        return np.array([(self.cursor() - 1 + i) % self.capacity for i in range(PADDING + 2)], dtype=np.int64)

    def _save(self, add_count: int) -> None:
        arrays = {
            **self._store,
            "add_count": np.array(add_count, dtype=np.int64),
            "invalid_range": self._invalid_range(),
        }
        # All six files are written to temp names first and renamed together at the end of the
        # block; on any error every temp file is removed. A reader never sees a half-written file.
        with ExitStack() as stack:
            for key in KEYS:
                tmp = stack.enter_context(atomic_path(self.directory / file_name(key, self.log_count)))
                with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as gz:
                    np.save(gz, arrays[key], allow_pickle=False)
        self.log_count += 1

    def close(self) -> None:
        """Save the final partial file (add_count = cursor), as Dopamine's ``log_final_buffer``."""
        if self._closed:
            return
        self._closed = True
        if self.add_count > 0:
            self._save(self.cursor())

    def __enter__(self) -> "DQNReplayWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
