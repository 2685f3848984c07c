from benchmarks.density.cli import main
from fh_rl.cli import run_cli

raise SystemExit(run_cli(main))
