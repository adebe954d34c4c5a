"""Training on QM9: :class:`Config` says what to train, :func:`run` trains
it, tests it and writes its reports. The parts, each usable on its own:

* :mod:`~acn_pyg.train.config`: :class:`Config`, :func:`check_config`;
* :mod:`~acn_pyg.train.experiment`: :func:`run`, :func:`build_model`,
  :func:`load_best_model`;
* :mod:`~acn_pyg.train.data`: splits, the per-element linear baseline, loaders;
* :mod:`~acn_pyg.train.losses`: the target loss and auxiliary terms (denoising);
* :mod:`~acn_pyg.train.loop`: :func:`take_step`, :func:`train_one_epoch`,
  :func:`evaluate`, :func:`train`;
* :mod:`~acn_pyg.train.checkpoints`: ``last.pt`` / ``best.pt``, resume, warm start;
* :mod:`~acn_pyg.train.report`: ``metrics.json``, summary and plots;
* :mod:`~acn_pyg.train.cli`: one command-line flag per :class:`Config` field;
* :mod:`~acn_pyg.train.baselines`: PyG's SchNet and DimeNet(++) with their
  published QM9 settings.
"""
from acn_pyg.train.checkpoints import TrainState, load_weights
from acn_pyg.train.cli import ACN_FIELDS, MODEL_FIELDS, add_config_arguments, config_from_args
from acn_pyg.train.config import DEFAULT_LR, EXTENSIVE_TARGETS, MODELS, Config, check_config
from acn_pyg.train.data import (LinearBaseline, Prepared, element_counts, molecule_arrays,
                                prepare, split_indices)
from acn_pyg.train.losses import DenoisingLoss, target_loss
from acn_pyg.train.loop import (Trainer, evaluate, lr_factor, predict, take_step, train,
                                train_one_epoch)
from acn_pyg.train.report import (cpu_model, epochs_cell, epochs_text, epochs_trained, load_run,
                                  machine, run_config, summary)
from acn_pyg.train.experiment import build_model, load_best_model, pick_device, run

__all__ = [
    "Config", "check_config", "run", "MODELS", "DEFAULT_LR", "EXTENSIVE_TARGETS",
    "prepare", "Prepared", "split_indices", "element_counts", "molecule_arrays",
    "LinearBaseline", "target_loss", "DenoisingLoss", "Trainer", "take_step",
    "train_one_epoch", "evaluate", "train", "predict", "lr_factor", "TrainState",
    "load_weights", "build_model", "load_best_model", "pick_device", "load_run", "run_config",
    "summary", "epochs_trained", "epochs_cell", "epochs_text", "machine", "cpu_model",
    "add_config_arguments", "config_from_args", "ACN_FIELDS", "MODEL_FIELDS",
]
