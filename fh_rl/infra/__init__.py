"""Infrastructure the rest of fh_rl stands on; nothing here knows about heads, agents or data.

- :mod:`~fh_rl.infra.atomic`: write-then-rename for every file fh_rl writes (nothing half-written).
- :mod:`~fh_rl.infra.locks`: one writer per run directory, sweep root and dataset file (``fcntl.flock``).
- :mod:`~fh_rl.infra.events`: one TensorBoard events file per run, across resumes and re-evaluations.
- :mod:`~fh_rl.infra.cli`: ``run_cli``, which turns bad input into one line and exit code 2.
- :mod:`~fh_rl.infra.progress`: tqdm bars on a terminal, plain progress lines in a log.
- :mod:`~fh_rl.infra.registry`: the one ``Registry`` type behind heads, agents and datasets.
- :mod:`~fh_rl.infra.plots`: pmfs drawn over labelled bins; matplotlib figures saved atomically.
- :mod:`~fh_rl.infra.metrics`: the paper's smoothness metric of a pmf.
- :mod:`~fh_rl.infra.utils`: seeding, devices.

Modules here import only the standard library, numpy, torch and plotting/progress libraries, never
another fh_rl layer, and this package's ``__init__`` imports nothing, so rollout workers (which must
not import torch) can use :mod:`~fh_rl.infra.cli` and :mod:`~fh_rl.infra.progress`.
"""
