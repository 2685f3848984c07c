"""DQN-Replay (Agarwal et al. 2020): an exact reader, a writer, and a subset cache.

    from fh_rl.datasets import load_dqn_replay
    data = load_dqn_replay("datasets/dqn-replay", "Breakout", run=1, max_transitions=500_000)

The modules, in the order the reader uses them:

* ``format``: file names, the checkpoint files' dtypes and shapes, and gzip
  ``.npy`` streaming (header parsed, payload decompressed chunk by chunk).
* ``plan``: pass 1, from ``add_count`` and the terminal flags alone: each
  file's rows in run order, padding dropped, episodes stitched across files,
  cut (truncated) at gaps and at the end of the data.
* ``selection``: which episodes a sample takes (``"all"``, ``"episodes"``, ``"paper"``).
* ``reader``: :func:`load_dqn_replay`, and pass 2, which streams every needed
  file once in parallel threads and copies out only the selected rows.
* ``cache``: the sample kept as memory-mapped ``.npy`` files.
* ``writer``: :class:`DQNReplayWriter`, the layout Dopamine writes.

Rewards are returned as stored (clipped to [-1, 1]). The on-disk layout and
the reader's guarantees are in docs/data.md.
"""

from fh_rl.datasets.dqn_replay.cache import CACHE_VERSION, default_cache_dir
from fh_rl.datasets.dqn_replay.format import (
    FRAME_SHAPE,
    KEYS,
    PADDING,
    STORE,
    discover_suffixes,
    file_name,
    read_array,
    replay_dir,
)
from fh_rl.datasets.dqn_replay.reader import load_dqn_replay
from fh_rl.datasets.dqn_replay.selection import PROTOCOLS
from fh_rl.datasets.dqn_replay.writer import DQNReplayWriter

__all__ = [
    "CACHE_VERSION",
    "DQNReplayWriter",
    "FRAME_SHAPE",
    "KEYS",
    "PADDING",
    "PROTOCOLS",
    "STORE",
    "default_cache_dir",
    "discover_suffixes",
    "file_name",
    "load_dqn_replay",
    "read_array",
    "replay_dir",
]
