from fh_rl.compare.cli import main
from fh_rl.infra.cli import run_cli

raise SystemExit(run_cli(main))
