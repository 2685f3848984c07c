"""The TensorBoard custom-scalars layout that overlays every run's metric in one chart (see :mod:`fh_rl.board`)."""

from __future__ import annotations

from fh_rl.board import CUSTOM_SCALARS_LAYOUT, LAYOUT_SUFFIX, write_run_root

write_custom_scalars = write_run_root
"""Write a root's layout (and HParams experiment) once: :func:`fh_rl.board.write_run_root`."""

__all__ = ["CUSTOM_SCALARS_LAYOUT", "LAYOUT_SUFFIX", "write_custom_scalars"]
