"""Quality benchmarks runnable from an installed package (``python -m fh_rl.benchmarks.<name>``)."""
