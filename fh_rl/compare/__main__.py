from fh_rl.cli import run_cli
from fh_rl.compare.cli import main

raise SystemExit(run_cli(main))
