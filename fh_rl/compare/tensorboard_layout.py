"""The custom-scalars layout every run carries (re-exported from :mod:`fh_rl.board`)."""

from fh_rl.board import CUSTOM_SCALARS_LAYOUT, LAYOUT_SUFFIX, remove_root_layouts, write_layout

__all__ = ["CUSTOM_SCALARS_LAYOUT", "LAYOUT_SUFFIX", "remove_root_layouts", "write_layout"]
