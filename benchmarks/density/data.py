"""The three synthetic datasets: quantised inputs (x, y), a label bin of z and the exact target pmf of z."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from fh_rl.infra.registry import unknown_name_message

NUM_BINS = 50
STD = 0.1  # the datasets' variance 0.01
BETA_SCALE = 100.0
CLIP_SLOPE, CLIP_STD = 1.5, 0.2  # the clipped dataset: z = clip(N(1.5 y, 0.2^2), -1, 1)


def bin_edges(num_bins: int = NUM_BINS) -> np.ndarray:
    """(K+1,) edges of K equal bins of [-1, 1]."""
    return np.linspace(-1.0, 1.0, num_bins + 1)


def bin_centers(num_bins: int = NUM_BINS) -> np.ndarray:
    """(K,) centres, the same values as ``Head.bin_centers``."""
    return -1.0 + (2.0 * np.arange(num_bins) + 1.0) / num_bins


def quantize(values: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Bin index of each value; values outside [-1, 1] go to the edge bins."""
    idx = np.floor((np.asarray(values, dtype=np.float64) + 1.0) / 2.0 * num_bins).astype(np.int64)
    return np.clip(idx, 0, num_bins - 1)


def _cdf_masses(cdf: Callable[[np.ndarray], np.ndarray], num_bins: int) -> np.ndarray:
    """Mass of each bin, ``(B, K)``, from a vectorised CDF evaluated at the edges ``(1, K+1)``."""
    c = cdf(bin_edges(num_bins)[None, :])  # (B, K+1)
    return np.clip(np.diff(c, axis=-1), 0.0, None)


def _normalise(masses: np.ndarray) -> np.ndarray:
    total = masses.sum(axis=-1, keepdims=True)
    assert np.all(total > 0), "a target pmf has no mass inside [-1, 1]"
    return masses / total


# ----------------------------------------------------------------------------- datasets


class DensityDataset:
    """A conditional law of z given (x, y): draw samples and give the exact target pmf."""

    name: str = ""

    def sample_inputs(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def sample_z(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Unrestricted draw of z given (x, y), shape (n,)."""
        raise NotImplementedError

    def target_pmf(self, x: np.ndarray, y: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
        """(n, K) bin masses of the law of z given (x, y), normalised over [-1, 1]."""
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, z), each (n,), with z drawn from its law truncated to [-1, 1] (by redrawing)."""
        x, y = self.sample_inputs(n, rng)
        return x, y, self.sample_z_truncated(x, y, rng)

    def sample_z_truncated(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """z given (x, y) conditioned on z in [-1, 1]: out-of-range draws are redrawn."""
        z = self.sample_z(x, y, rng)
        outside = np.flatnonzero(np.abs(z) > 1.0)
        while outside.size:
            z[outside] = self.sample_z(x[outside], y[outside], rng)
            outside = outside[np.abs(z[outside]) > 1.0]
        return z


class GaussianDataset(DensityDataset):
    name = "gaussian"

    def sample_inputs(self, n, rng):
        x = rng.uniform(-0.8, 0.8, n)
        return x, rng.normal(x, STD)

    def sample_z(self, x, y, rng):
        return rng.normal(y, STD)

    def target_pmf(self, x, y, num_bins=NUM_BINS):
        y = np.asarray(y, dtype=np.float64)[:, None]
        return _normalise(_cdf_masses(lambda e: stats.norm.cdf(e, loc=y, scale=STD), num_bins))


class GMM2Dataset(DensityDataset):
    name = "gmm2"

    def sample_inputs(self, n, rng):
        return rng.uniform(-0.8, 0.8, n), rng.uniform(-0.8, 0.8, n)

    def sample_z(self, x, y, rng):
        mean = np.where(rng.random(x.shape[0]) < 0.5, x, y)
        return rng.normal(mean, STD)

    def target_pmf(self, x, y, num_bins=NUM_BINS):
        x = np.asarray(x, dtype=np.float64)[:, None]
        y = np.asarray(y, dtype=np.float64)[:, None]
        masses = _cdf_masses(
            lambda e: 0.5 * stats.norm.cdf(e, loc=x, scale=STD) + 0.5 * stats.norm.cdf(e, loc=y, scale=STD),
            num_bins,
        )
        return _normalise(masses)


class BetaDataset(DensityDataset):
    """z = s * Beta(a, b), a = 100|x|, b = 100|y|; a, b are floored at 1e-6 (x = 0 has probability 0)."""

    name = "beta"

    @staticmethod
    def _shapes(x, y):
        a = np.maximum(BETA_SCALE * np.abs(np.asarray(x, dtype=np.float64)), 1e-6)
        b = np.maximum(BETA_SCALE * np.abs(np.asarray(y, dtype=np.float64)), 1e-6)
        return a, b

    def sample_inputs(self, n, rng):
        x = rng.uniform(-0.8, 0.8, n)
        return x, rng.normal(x, STD)

    def sample_z(self, x, y, rng):
        a, b = self._shapes(x, y)
        sign = np.where(rng.random(x.shape[0]) < 0.5, -1.0, 1.0)
        return sign * rng.beta(a, b)

    def target_pmf(self, x, y, num_bins=NUM_BINS):
        a, b = self._shapes(x, y)
        a, b = a[:, None], b[:, None]

        def cdf(e):  # law of s * B: P(z <= e) = 1/2 P(B >= -e) + 1/2 P(B <= e)
            return 0.5 * stats.beta.sf(np.clip(-e, 0.0, 1.0), a, b) * (e < 0) + (e >= 0) * (
                0.5 + 0.5 * stats.beta.cdf(np.clip(e, 0.0, 1.0), a, b)
            )

        return _normalise(_cdf_masses(cdf, num_bins))


class ClippedDataset(DensityDataset):
    """z = clip(N(1.5 y, 0.04), -1, 1): atoms at the bounds -1 and +1 (saturated actions), a Gaussian between."""

    name = "clipped"

    def sample_inputs(self, n, rng):
        x = rng.uniform(-0.8, 0.8, n)
        return x, rng.normal(x, STD)

    def sample_z(self, x, y, rng):
        return np.clip(rng.normal(CLIP_SLOPE * y, CLIP_STD), -1.0, 1.0)

    def target_pmf(self, x, y, num_bins=NUM_BINS):
        mean = CLIP_SLOPE * np.asarray(y, dtype=np.float64)[:, None]

        def cdf(e):  # P(z < e) at e = -1 (0), P(z <= e) elsewhere: the atom at -1 falls in the first bin, at +1 in the last
            return np.where(e >= 1.0, 1.0, np.where(e <= -1.0, 0.0, stats.norm.cdf(e, loc=mean, scale=CLIP_STD)))

        return _normalise(_cdf_masses(cdf, num_bins))


DATASETS: dict[str, DensityDataset] = {
    d.name: d for d in (GaussianDataset(), GMM2Dataset(), BetaDataset(), ClippedDataset())
}


def get_dataset(name: str) -> DensityDataset:
    if name not in DATASETS:
        raise ValueError(unknown_name_message("dataset", name, sorted(DATASETS)))
    return DATASETS[name]


@dataclass
class Split:
    """Model inputs (bin centres of the quantised x, y), labels (bin of z) and true pmfs."""

    inputs: np.ndarray  # (B, 2) float32
    labels: np.ndarray  # (B,) int64
    target: np.ndarray  # (B, K) float64


def make_splits(dataset: str, samples: int, seed: int, num_bins: int = NUM_BINS) -> tuple[Split, Split]:
    """Draw ``samples`` points and split them 80/20 into train and test."""
    if samples < 5:
        raise ValueError(f"--samples must be at least 5 for an 80/20 split, got {samples}")
    ds = get_dataset(dataset)
    rng = np.random.default_rng(seed)
    x, y, z = ds.sample(samples, rng)
    centers = bin_centers(num_bins)
    inputs = np.stack([centers[quantize(x, num_bins)], centers[quantize(y, num_bins)]], axis=-1)
    labels = quantize(z, num_bins)
    target = ds.target_pmf(x, y, num_bins)
    n_train = int(round(0.8 * samples))
    make = lambda s: Split(inputs[s].astype(np.float32), labels[s], target[s])  # noqa: E731
    return make(slice(0, n_train)), make(slice(n_train, None))

