"""Benchmarks, run from the repository root: speed and memory scripts (``python benchmarks/heads.py``)
and the paper's synthetic density benchmark (``python -m benchmarks.density``). Not installed with fh_rl."""
