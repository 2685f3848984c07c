"""The Fourier head paper's synthetic density benchmark (Gillman et al. 2024, section 4.1).

Every registered head that scores bins learns the conditional distribution of a scalar z given
two inputs (x, y), and is scored against the known true pmf::

    python -m benchmarks.density --out runs/density --jobs 2
    python -m benchmarks.density --heads linear fourier --frequencies 12 \
        --seeds 1 --epochs 20 --out /tmp/density

Datasets (``--samples`` draws, 80/20 train/test split, K = 50 equal bins of
[-1, 1]; 0.01 is a variance, i.e. a standard deviation of 0.1):

- ``gaussian``: x ~ U(-0.8, 0.8), y ~ N(x, 0.01), z ~ N(y, 0.01).
- ``gmm2``: x, y ~ U(-0.8, 0.8), z ~ N(x, 0.01) or N(y, 0.01) with probability 1/2 each.
- ``beta``: x ~ U(-0.8, 0.8), y ~ N(x, 0.01), z = s * Beta(100|x|, 100|y|), s = +-1
  with probability 1/2 each.

Target pmf: the true conditional density of z given the exact (continuous)
x and y, *integrated over each of the K bins* (differences of the exact CDF,
scipy.stats) and normalised over the K bins, i.e. the law of z conditioned on
z in [-1, 1]. Samples of z that fall outside [-1, 1] (only the Gaussian
datasets have such tails) are redrawn, so the labels follow exactly that
truncated law. The model sees x and y quantised to bin indices, mapped to
their bin centres in [-1, 1], so the best achievable KL is slightly above 0.

Model: MLP 2 -> 64 -> 32 with ReLU, then the head (1 action dimension, K
bins); loss cross-entropy of the head's log-probs plus the head's
regularisation; Adam lr 1e-3, batch 32; ``--epochs`` passes over the
training split. The seed fixes the data draw, the initialisation and the
batch order.

Metrics on the test split (true pmf p, predicted pmf q; the exact pmf, i.e.
``head.pmf(h)`` where a head has one, else ``exp(log_probs)``):

- ``kl``: mean over test points of KL(p || q) = sum_k p_k log(p_k / q_k) (nats).
- ``mse``: mean of (E_q[c] - E_p[c])^2, c the bin centres: the squared error of
  the expected bin value against the true expected bin value.
- ``smoothness``: mean of :func:`fh_rl.infra.metrics.smoothness` of q (lower is smoother).

Outputs under ``--out``: ``results.json`` (every run and the aggregates),
``results.md`` (one table per dataset, mean +- std over seeds),
``kl_smoothness_vs_frequencies.png`` and ``pmfs.png``; ``runs.jsonl`` gets one
line per finished run as the sweep goes, and ``--resume`` reuses them.

Runs that share a head setting (all datasets and seeds) train together as one
stacked model (:func:`train_group`), one such group per worker process.

Run it from the repository root (``benchmarks`` is not installed with the
package). Modules: ``data`` (bins, datasets, splits), ``metrics``, ``train``
(the model and the stacked training), ``report`` (aggregates and tables),
``plots`` and ``cli``.
"""

from benchmarks.density.cli import main
from benchmarks.density.data import (
    DATASETS,
    NUM_BINS,
    DensityDataset,
    Split,
    bin_centers,
    bin_edges,
    get_dataset,
    make_splits,
    quantize,
)
from benchmarks.density.metrics import expected_value, kl_divergence, score
from benchmarks.density.report import PUBLISHED_KL, aggregate, markdown_tables, published_kl
from benchmarks.density.train import DensityModel, RunConfig, head_label, train_and_score, train_group

__all__ = [
    "DATASETS",
    "NUM_BINS",
    "PUBLISHED_KL",
    "DensityDataset",
    "DensityModel",
    "RunConfig",
    "Split",
    "aggregate",
    "bin_centers",
    "bin_edges",
    "expected_value",
    "get_dataset",
    "head_label",
    "kl_divergence",
    "main",
    "make_splits",
    "markdown_tables",
    "published_kl",
    "quantize",
    "score",
    "train_and_score",
    "train_group",
]
