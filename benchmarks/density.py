"""The Fourier head paper's synthetic density benchmark; see fh_rl/benchmarks/density.py.

    python benchmarks/density.py --out runs/density --jobs 2
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fh_rl.benchmarks.density import main  # noqa: E402
from fh_rl.cli import run_cli  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_cli(main))
