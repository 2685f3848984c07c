"""Run configuration: typed dataclasses, YAML files under ``configs/``, ``--set a.b=c`` overrides.

A config file is a nested mapping whose sections match :class:`Config`'s
fields. Every value is checked against its field's type and range; an
unknown key or a bad value raises ValueError naming the key and, for a
misspelt key, the closest valid one. The ``head`` section is ``name`` plus the
chosen head's own parameters (``head_params(name)``), flat, so that
``--set head.num_frequencies=8`` works like any other field.

    cfg = load_config("configs/default.yaml", overrides=["train.steps=100"], head="linear", seed=1)
    cfg.to_dict()   # plain nested dict, the form saved in checkpoints and run directories

``schema`` holds the dataclasses, ``coerce`` turns YAML values into field
types, ``load`` reads and writes files.
"""

from fh_rl.config.load import DEFAULT_CONFIG, config_from_dict, load_config, save_config, with_current_defaults
from fh_rl.config.schema import (
    DATASET_BUILDERS,
    DATASET_FORMATS,
    ORDERINGS,
    RTG_MODES,
    Config,
    DatasetConfig,
    EnvConfig,
    EvalConfig,
    HeadConfig,
    TrainConfig,
)

__all__ = [
    "DATASET_BUILDERS",
    "DATASET_FORMATS",
    "DEFAULT_CONFIG",
    "ORDERINGS",
    "RTG_MODES",
    "Config",
    "DatasetConfig",
    "EnvConfig",
    "EvalConfig",
    "HeadConfig",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "save_config",
    "with_current_defaults",
]
