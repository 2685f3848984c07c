"""``python -m fh_rl.compare RUN_DIR...``: heads against heads, across seeds.

    python -m fh_rl.compare runs/sweep-default
    python -m fh_rl.compare runs/Pendulum-v1 other/runs --out results/

The directories are searched for run directories (those holding a
``config.yaml``). A run counts when it is complete (its ``eval.json`` holds
results); incomplete or malformed ones are listed with the reason and skipped.
Runs are grouped per environment by agent, head and the settings that differ
between the runs (head parameters such as ``num_frequencies``, or any other
swept key); the seed is what varies inside a group. For each group:

- return: the mean over seeds of each run's mean evaluation return (first
  target return), a 95% bootstrap confidence interval of that mean
  (``scipy.stats.bootstrap``, percentile method, 10,000 resamples, fixed seed),
  and the interquartile mean (``scipy.stats.trim_mean(x, 0.25)``, rliable's IQM);
- normalised score (``fh_rl.envs.scores``; "-" for environments without
  reference scores);
- held-out metrics: the run's last ``val/*`` values (read from its TensorBoard
  events), averaged over seeds. The NLL is in two columns that never mix units:
  ``val/nll`` over the action bins (a pmf: every head with a distribution,
  the Gaussian head discretised over the same bins) and ``val/nll_density``
  (a density on the [-1, 1] action scale: heads that score continuous actions);
  then accuracy, smoothness and ``val/action_mse`` (squared error of the
  evaluation action on the [-1, 1] scale, Box actions). A metric that does not
  apply to a head (e.g. the NLL of the ``mse`` head, a point prediction) is "-"; a mean over fewer runs
  than the group has says so (``0.2 (2 of 3 seeds)``);
- the number of seeds.
- when the runs evaluated during training (``eval.every_steps``, as the
  ``seaquest-paper`` preset does after each epoch): the paper's statistic,
  labelled as such: per seed the best of its N evaluations, normalised where
  the environment has reference scores, then mean +- 0.67 std (ddof 0) over
  seeds. It picks the best checkpoint with the test episodes themselves, so
  it is optimistic; the final-evaluation columns are the honest numbers.

Writes ``comparison.md``, ``comparison.json`` and PNG figures into ``--out``
(default: the first directory): ``frequencies-<env>.png`` (return and smoothness
against the number of frequencies, the other heads as bands) and
``pmfs-<env>.png`` (the learned pmfs of each head for the same held-out states;
a point prediction as a line at its action's bin).

Modules: ``runs`` (discovery and loading), ``stats`` (grouping and statistics),
``report`` (:func:`compare`: tables, ``comparison.json``), ``plots`` (figures),
``tensorboard_layout`` (the custom-scalars layout), ``cli`` (the command line).
"""

from fh_rl.compare.cli import main
from fh_rl.compare.plots import held_out_pmfs, plot_frequencies, plot_pmfs, run_pmfs
from fh_rl.compare.report import compare, compare_runs, markdown_table
from fh_rl.compare.runs import EVALUATIONS, VAL_METRICS, Run, find_runs, last_scalars, load_run, run_from_record
from fh_rl.compare.stats import Group, best_of_evaluations, group_runs, seed_statistics, summarize
from fh_rl.compare.tensorboard_layout import CUSTOM_SCALARS_LAYOUT, LAYOUT_SUFFIX, remove_root_layouts, write_layout

__all__ = [
    "CUSTOM_SCALARS_LAYOUT",
    "LAYOUT_SUFFIX",
    "VAL_METRICS",
    "Group",
    "Run",
    "best_of_evaluations",
    "compare",
    "compare_runs",
    "EVALUATIONS",
    "find_runs",
    "group_runs",
    "held_out_pmfs",
    "last_scalars",
    "load_run",
    "main",
    "markdown_table",
    "plot_frequencies",
    "plot_pmfs",
    "run_from_record",
    "run_pmfs",
    "seed_statistics",
    "summarize",
    "remove_root_layouts",
    "write_layout",
]
