"""The model (an MLP and a registered head) and its training, many runs stacked into one vmapped model."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from benchmarks.density.data import NUM_BINS, Split, make_splits
from benchmarks.density.metrics import score
from fh_rl.heads import build_head

NUM_EXAMPLE_POINTS = 4  # test points whose pmfs are stored for the figure


class DensityModel(nn.Module):
    """MLP 2 -> 64 -> 32 (ReLU) followed by a head with one action dimension."""

    def __init__(self, head: str, num_bins: int = NUM_BINS, **head_kwargs) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.head = build_head(head, in_features=32, num_bins=num_bins, action_dims=1, **head_kwargs)

    def forward(self, inputs: torch.Tensor):
        return self.head(self.body(inputs))  # log_probs (B, 1, K), regularisation ()

    @torch.no_grad()
    def pmf(self, inputs: torch.Tensor) -> torch.Tensor:
        """Exact predicted pmf (B, K)."""
        h = self.body(inputs)
        if hasattr(self.head, "pmf"):
            return self.head.pmf(h)[:, 0]  # (B, 1, K) -> (B, K)
        return self.head(h).log_probs[:, 0].exp()


@dataclass
class RunConfig:
    """One training run of the benchmark."""

    dataset: str
    """Dataset name (see DATASETS)."""
    head: str
    """Registered head name."""
    head_kwargs: dict = field(default_factory=dict)
    """Extra keyword arguments of the head (num_frequencies, regularization_gamma, ...)."""
    seed: int = 1
    """Seeds the data draw, the initialisation and the batch order."""
    epochs: int = 500
    """Passes over the training split."""
    samples: int = 5000
    """Points drawn before the 80/20 split."""
    batch_size: int = 32
    """Minibatch size."""
    lr: float = 1e-3
    """Adam learning rate."""

    @property
    def label(self) -> str:
        return head_label(self.head, self.head_kwargs)


def head_label(head: str, kwargs: dict) -> str:
    """``linear``, ``gmm``, ``fourier(N=12)``, ``fourier(N=12, gamma=1e-06)``."""
    parts = []
    if "num_frequencies" in kwargs:
        parts.append(f"N={kwargs['num_frequencies']}")
    if kwargs.get("regularization_gamma", 0):
        parts.append(f"gamma={kwargs['regularization_gamma']:g}")
    return f"{head}({', '.join(parts)})" if parts else head


def train_and_score(cfg: RunConfig) -> dict:
    """Train one model and return its config, metrics, timing and a few example pmfs."""
    return train_group([cfg])[0]


def group_key(cfg: RunConfig) -> tuple:
    return (cfg.head, json.dumps(cfg.head_kwargs, sort_keys=True), cfg.epochs, cfg.samples, cfg.batch_size, cfg.lr)


def train_group(cfgs: Sequence[RunConfig]) -> list[dict]:
    """Train M runs that share head, head settings and optimisation settings, as one stacked model.

    The M models (one per dataset and seed) keep separate parameters, data and
    batch orders; ``torch.func.vmap`` runs them in one call per step. Adam is
    elementwise, so one Adam over the stacked parameters makes exactly the
    updates of M separate Adams; the loss is the sum of the M per-model losses,
    whose gradients do not mix. Each model is initialised as a lone run with
    ``torch.manual_seed(seed)`` would be.
    """
    if not cfgs:
        return []
    keys = {group_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError(f"train_group needs runs with one head setting and one optimisation setting, got {keys}")
    torch.set_num_threads(1)
    splits = [make_splits(c.dataset, c.samples, c.seed) for c in cfgs]
    models = []
    for c in cfgs:
        torch.manual_seed(c.seed)
        models.append(DensityModel(c.head, **c.head_kwargs))
    params, train_seconds = _fit_stacked(models, [train for train, _ in splits], cfgs)
    results = []
    with torch.no_grad():
        for m, (c, (_, test)) in enumerate(zip(cfgs, splits, strict=True)):
            model = models[m]
            for name, t in model.named_parameters():
                t.copy_(params[name][m])
            results.append(_result(c, model.eval(), test, train_seconds, len(cfgs)))
    return results


def _fit_stacked(models: list[DensityModel], train: list[Split], cfgs: Sequence[RunConfig]) -> tuple[dict, float]:
    """Train the M models' stacked parameters with one vmapped loss and one Adam; returns them and the seconds taken."""
    first, M = cfgs[0], len(models)
    params, buffers = torch.func.stack_module_state(models)  # each param: (M, ...)
    base = models[0]

    def loss_one(p, b, x, target):
        log_probs, reg = torch.func.functional_call(base, (p, b), (x,))
        return nn.functional.nll_loss(log_probs[:, 0], target) + reg

    batched_loss = torch.func.vmap(loss_one, in_dims=(0, 0, 0, 0))
    opt = torch.optim.Adam(params.values(), lr=first.lr, foreach=True)
    inputs = torch.from_numpy(np.stack([tr.inputs for tr in train]))  # (M, B_train, 2)
    labels = torch.from_numpy(np.stack([tr.labels for tr in train]))  # (M, B_train)
    n = inputs.shape[1]
    rows = torch.arange(M)[:, None]  # (M, 1)
    gens = [torch.Generator().manual_seed(c.seed) for c in cfgs]
    start = time.perf_counter()
    for _ in range(first.epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens])  # (M, B_train)
        for i in range(0, n, first.batch_size):
            idx = order[:, i : i + first.batch_size]  # (M, B)
            loss = batched_loss(params, buffers, inputs[rows, idx], labels[rows, idx]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return params, time.perf_counter() - start


def _result(cfg: RunConfig, model: DensityModel, test: Split, train_seconds: float, group_size: int) -> dict:
    """One run's record: config, test metrics, timing and the pmfs of the first test points."""
    predicted = model.pmf(torch.from_numpy(test.inputs)).double().numpy()  # (B_test, K)
    return {
        "config": asdict(cfg),
        "label": cfg.label,
        "metrics": score(test.target, predicted),
        "train_seconds": train_seconds,
        "group_size": group_size,
        "examples": {
            "inputs": test.inputs[:NUM_EXAMPLE_POINTS].tolist(),
            "target": test.target[:NUM_EXAMPLE_POINTS].tolist(),
            "predicted": predicted[:NUM_EXAMPLE_POINTS].tolist(),
        },
    }
