"""fh_rl: offline RL agents with pluggable action heads (linear softmax vs the Fourier head).

The Python API (docs/python_api.md), loaded on first use so that ``import fh_rl`` stays light and
``python -m fh_rl.train`` does not import the package's modules twice:

    fh_rl.fit(config=None, **overrides) -> Path      # train + evaluate, as python -m fh_rl.train
    fh_rl.load(run_dir, device="cpu") -> Policy       # reset / predict / action_distribution / evaluate
    fh_rl.make_config(config=None, **overrides)       # the Config that fit would train
"""

__version__ = "0.1.0"

__all__ = ["ActionDistribution", "Policy", "fit", "load", "make_config"]


def __getattr__(name: str):
    if name in __all__:
        from fh_rl import api

        return getattr(api, name)
    raise AttributeError(f"module 'fh_rl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
