"""Checks every loader runs on what it returns: no NaN or infinity ever reaches training.

A non-finite observation, action or reward is an error naming the file, the
key and the first bad row (a NaN reward would otherwise surface much later as
"training diverged", a NaN action would be quantised into a bin and trained on).
Integer and boolean arrays cannot be non-finite and are not scanned.
"""

from __future__ import annotations

import numpy as np

MAX_MAGNITUDE = 1e15
"""Largest absolute observation or reward fh_rl trains on. Training arithmetic is float32 (largest 3.4e38): a
value above this, squared and summed over a batch (state statistics, losses), would overflow to infinity and
surface much later as "training diverged"; a value this large is a unit or encoding error in the data."""

CHUNK_ROWS_BYTES = 64 << 20
"""Scan at most this many bytes at a time (memory-mapped observations are never loaded whole)."""


def first_non_finite(array: np.ndarray) -> int | None:
    """Index of the first row of ``array`` holding a NaN or infinity, or None (integer arrays: None)."""
    array = np.asanyarray(array)
    if not np.issubdtype(array.dtype, np.inexact) or array.size == 0:
        return None
    flat = array.reshape(len(array), -1) if array.ndim > 1 else array.reshape(-1, 1)
    step = max(1, CHUNK_ROWS_BYTES // max(1, flat[:1].nbytes))
    for lo in range(0, len(flat), step):
        bad = ~np.isfinite(flat[lo : lo + step]).all(axis=1)
        if bad.any():
            return lo + int(np.argmax(bad))
    return None


def check_finite(array: np.ndarray, *, source: object, key: str, rows: np.ndarray | None = None) -> None:
    """ValueError naming ``source`` (the file), ``key`` and the first row with a non-finite value.

    ``rows``: the file row of each array row, when the array holds a selection (default: 0, 1, ...).
    """
    i = first_non_finite(array)
    if i is None:
        return
    row = int(rows[i]) if rows is not None else i
    value = np.asarray(array[i]).reshape(-1)
    bad = value[~np.isfinite(value)][0]
    raise ValueError(
        f"{source}: {key!r} holds a non-finite value ({bad}) at row {row}; fh_rl does not train on NaN or "
        f"infinity: fix or drop that row's episode in the data"
    )


def check_box_actions(actions: np.ndarray, low: np.ndarray, high: np.ndarray, *, source: object,
                      tolerance: float = 1e-3) -> int:
    """Continuous actions must lie in [low, high] up to ``tolerance`` of the range: ValueError naming the first
    row outside, with the fix (``dataset.clip_actions: true``). Returns the number of rows outside the exact bounds."""
    actions = np.asarray(actions)
    low = np.asarray(low, dtype=np.float64).reshape(-1)
    high = np.asarray(high, dtype=np.float64).reshape(-1)
    slack = tolerance * (high - low)
    outside = 0
    step = max(1, CHUNK_ROWS_BYTES // max(1, actions[:1].nbytes))
    for lo in range(0, len(actions), step):
        a = actions[lo : lo + step].astype(np.float64)
        far = ((a < low - slack) | (a > high + slack)).any(axis=1)
        if far.any():
            i = int(np.argmax(far))
            raise ValueError(
                f"{source}: 'actions' row {lo + i} is {a[i].tolist()}, outside the environment's action bounds "
                f"[{low.tolist()}, {high.tolist()}] by more than {tolerance:g} of the range; set "
                f"dataset.clip_actions: true to clip such actions to the bounds, or check that the data belongs "
                f"to this environment"
            )
        outside += int(((a < low) | (a > high)).any(axis=1).sum())
    return outside


def check_magnitude(array: np.ndarray, *, source: object, key: str, limit: float = MAX_MAGNITUDE,
                    rows: np.ndarray | None = None) -> None:
    """ValueError naming ``source``, ``key``, the first row and its value when some ``|value| > limit``
    (:data:`MAX_MAGNITUDE`): such data would overflow float32 training arithmetic. Integer arrays are skipped.
    ``rows``: the file row of each array row, as in :func:`check_finite`."""
    array = np.asanyarray(array)
    if not np.issubdtype(array.dtype, np.inexact) or array.size == 0:
        return
    flat = array.reshape(len(array), -1) if array.ndim > 1 else array.reshape(-1, 1)
    step = max(1, CHUNK_ROWS_BYTES // max(1, flat[:1].nbytes))
    for lo in range(0, len(flat), step):
        big = (np.abs(flat[lo : lo + step]) > limit).any(axis=1)
        if big.any():
            i = lo + int(np.argmax(big))
            row = np.asarray(flat[i], dtype=np.float64)
            value = row[np.abs(row) > limit][0]
            raise ValueError(
                f"{source}: {key!r} holds {value:g} at row {int(rows[i]) if rows is not None else i}, beyond the {limit:g} fh_rl trains on (float32 "
                f"training would overflow on it and stop as 'diverged'); rescale that key or drop that row's episode"
            )


def check_numeric(array: np.ndarray, *, source: object, key: str, boolean: bool = False) -> None:
    """TypeError naming ``source`` and ``key`` when ``array`` holds no numbers (strings, objects, compounds);
    booleans only where ``boolean`` (terminal flags)."""
    kind = np.asarray(array).dtype.kind
    if kind in "iuf" or (boolean and kind == "b"):
        return
    found = {"b": "booleans", "S": "byte strings", "U": "strings", "O": "objects (e.g. variable-length strings)",
             "V": "compound records", "c": "complex numbers"}.get(kind, f"{np.asarray(array).dtype} values")
    expected = "numbers or booleans" if boolean else "numbers"
    hint = (" (Box actions are floats; discrete actions are integer ids 0..n-1)" if key.endswith("actions") else "")
    raise TypeError(f"{source}: {key!r} holds {found}, expected {expected}{hint}; convert it in the file")
