"""The ``python -m fh_rl.compare`` command line."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import fh_rl.compare
from fh_rl.compare.report import compare


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fh_rl.compare", description=fh_rl.compare.__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="RUN_DIR", help="run directories or folders searched for them")
    parser.add_argument("--out", default=None, help="where comparison.md/.json and figures go (default: the first RUN_DIR)")
    parser.add_argument("--no-figures", action="store_true", help="tables only (no checkpoints or dataset needed)")
    parser.add_argument("--pmf-states", type=int, default=4, help="held-out states in the pmf figure (default 4)")
    parser.add_argument("--eval", dest="evaluation", choices=("training", "latest"), default="training",
                        help="which evaluation of each run: training (eval.json, made when training finished, what "
                             "TensorBoard's eval/* tags show; default) or latest (the newest eval-<time>.json from "
                             "python -m fh_rl.evaluate, TensorBoard's reeval/*, else eval.json)")
    args = parser.parse_args(argv)
    if args.pmf_states < 1:
        raise ValueError(f"--pmf-states must be >= 1, got {args.pmf_states}")
    out = Path(args.out) if args.out else Path(args.paths[0])
    if not out.is_dir() and args.out is None:
        out = out.parent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        result = compare(args.paths, out, figures=not args.no_figures, pmf_states=args.pmf_states,
                         evaluation=args.evaluation)
    print(result["markdown"])
    for s in result["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    print(f"wrote {out / 'comparison.md'}, {out / 'comparison.json'}"
          + "".join(f", {f}" for f in result["figures"]), file=sys.stderr)
    return 0
