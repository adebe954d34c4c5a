"""Checkpoints of a run: ``last.pt`` (everything a resumed run needs) and
``best.pt`` (the evaluated model's state dict at its best validation
error), warm starts from either, and the model of a finished run."""
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import torch
from torch import Tensor

from acn_pyg.inference.checkpoint import is_checkpoint, state_dict_of
from acn_pyg.train import distributed
from acn_pyg.train.config import RESUMABLE_FIELDS, Config
from acn_pyg.utils.ema import ExponentialMovingAverage, averaged_module_state
from acn_pyg.utils.io import atomic_save, load_checkpoint


@dataclass
class TrainState:
    """Where a run stands: the epochs begun (the last may be cut short by the
    time budget), the optimizer steps taken, the training time, the best
    validation error and one history entry per validation."""
    epoch: int = 0
    steps: int = 0
    elapsed: float = 0.0
    best_val: float = float("inf")
    history: List[Dict[str, float]] = field(default_factory=list)


def save_last(path: str, cfg: Config, model: torch.nn.Module,
              optimizer: torch.optim.Optimizer, ema: Optional[ExponentialMovingAverage],
              state: TrainState, shuffle_rng: torch.Generator,
              denoise: Optional[torch.nn.Module] = None) -> None:
    """Writes everything :func:`restore_last` needs to continue the run
    (:func:`~acn_pyg.utils.io.atomic_save`: a failed save keeps the previous
    file)."""
    ckpt = {"config": json.dumps(asdict(cfg)),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else {},
            "epoch": state.epoch, "steps": state.steps, "elapsed": state.elapsed,
            "best_val": state.best_val, "history": json.dumps(state.history),
            "rng": torch.get_rng_state(), "shuffle_rng": shuffle_rng.get_state(),
            "processes": distributed.world_size()}
    if denoise is not None:
        ckpt.update(denoise_head=denoise.head.state_dict(), denoise_weight=denoise.weight)
    atomic_save(ckpt, path)


def check_resumable(path: str, saved: Optional[str], cfg: Config) -> None:
    """Raises a :class:`ValueError` naming every flag in which :obj:`cfg`
    differs from the config :obj:`saved` with the checkpoint :obj:`path`,
    but those a resumed run may change (:data:`RESUMABLE_FIELDS`)."""
    if saved is None:
        warnings.warn(f"{path} holds no config (saved by acn_pyg < 0.3): the flags of this "
                      "run are not checked against it")
        return
    saved = json.loads(saved)
    ours = asdict(cfg)
    differ = [k for k in ours if k not in RESUMABLE_FIELDS and k in saved and saved[k] != ours[k]]
    if differ:
        flags = ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} (here {ours[k]!r})"
                          for k in differ)
        raise ValueError(f"--resume: {path} was trained with {flags}; resume with its flags, "
                         "or start a new run in another --out")


def check_same_layout(path: str, saved: Dict[str, Tensor], model: torch.nn.Module) -> None:
    """Raises a :class:`ValueError` if a module of the state dict
    :obj:`saved` has another layout version than :obj:`model`'s (saved by
    another acn_pyg): its weights load, converted, but the optimizer's
    moments, kept per tensor, would no longer match them."""
    theirs = getattr(saved, "_metadata", None) or {}
    ours = model.state_dict()._metadata
    for key, meta in ours.items():
        old = theirs.get(key, {}).get("version")
        if old is not None and old != meta.get("version"):
            raise ValueError(
                f"--resume: {path} was saved by another acn_pyg, whose '{key}' lays out its "
                f"weights differently (layout {old}, here {meta.get('version')}): the weights "
                f"load, converted, but the optimizer's state does not. Start a new run from "
                f"its weights instead: --init-from {path}")


def restore_last(path: str, cfg: Config, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, ema: Optional[ExponentialMovingAverage],
                 shuffle_rng: torch.Generator, denoise: Optional[torch.nn.Module],
                 device: torch.device, steps_per_epoch: int,
                 ckpt: Optional[Dict[str, object]] = None) -> TrainState:
    """Loads a ``last.pt`` of :func:`save_last` (or its contents
    :obj:`ckpt`, already read) into the run's objects and returns its
    :class:`TrainState`; the random generators continue where they were, so
    the run goes on as if never stopped. Refuses a checkpoint of other flags
    (:func:`check_resumable`) or of another number of processes."""
    if ckpt is None:
        ckpt = load_checkpoint(path, device)
    processes = int(ckpt.get("processes", 1))
    if processes != distributed.world_size():
        raise ValueError(f"--resume: {path} was trained by {processes} process(es), this run "
                         f"has {distributed.world_size()}: the global batch would change. Resume "
                         f"with {processes}, or start a new run from its weights: --init-from "
                         f"{path}")
    check_same_layout(path, ckpt["model"], model)
    check_resumable(path, ckpt.get("config"), cfg)
    model.load_state_dict(ckpt["model"])
    if ema is not None:
        ema.load_state_dict(ckpt["ema"])
    if denoise is not None:
        if "denoise_head" not in ckpt:
            raise ValueError(f"{path} was saved without --denoise-weight; resume it "
                             f"without, or start a new run")
        denoise.head.load_state_dict(ckpt["denoise_head"])
    elif "denoise_head" in ckpt:
        raise ValueError(f"{path} was saved with --denoise-weight "
                         f"{ckpt['denoise_weight']:g}; resume it with the same")
    fused = [(g["fused"], g["foreach"]) for g in optimizer.param_groups]
    optimizer.load_state_dict(ckpt["optimizer"])
    for group, (f, foreach) in zip(optimizer.param_groups, fused):  # this device's choice
        group["fused"], group["foreach"] = f, foreach
    torch.set_rng_state(ckpt["rng"].cpu())  # map_location moved it
    if "shuffle_rng" in ckpt:
        shuffle_rng.set_state(ckpt["shuffle_rng"].cpu())
    # Older checkpoints hold no step count: full epochs.
    steps = int(ckpt.get("steps", ckpt["epoch"] * steps_per_epoch))
    return TrainState(epoch=int(ckpt["epoch"]), steps=steps, elapsed=float(ckpt["elapsed"]),
                      best_val=float(ckpt["best_val"]), history=json.loads(ckpt["history"]))


def load_weights(path: str, device=None) -> Dict[str, Tensor]:
    """The model weights in a checkpoint of :func:`acn_pyg.train.run`, for
    a warm start (:obj:`Config.init_from`): a ``best.pt`` holds the weights
    of the evaluated model (the weight average when there is one); of a
    ``last.pt`` the weight average is taken if it has one, else the trained
    weights. The tensors are put on :obj:`device` (default: the CPU),
    whatever device the run saved them from."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--init-from: no checkpoint at {path!r}")
    ckpt = load_checkpoint(path, "cpu" if device is None else device)
    if isinstance(ckpt, dict) and "model" in ckpt and "optimizer" in ckpt:  # a last.pt
        averaged = averaged_module_state(ckpt.get("ema") or {})
        if averaged and getattr(averaged, "_metadata", None) is None:
            # acn_pyg <= 0.3 saved the average without layout versions:
            # they are the model's.
            metadata = getattr(ckpt["model"], "_metadata", None)
            if metadata is not None:
                averaged._metadata = metadata
        return averaged if averaged else ckpt["model"]
    if is_checkpoint(ckpt):
        return state_dict_of(ckpt)
    if not isinstance(ckpt, dict) or not all(isinstance(v, Tensor) for v in ckpt.values()):
        raise ValueError(f"--init-from: {path!r} is neither a best.pt (a state dict) nor a "
                         "last.pt of acn_pyg.train.run")
    return ckpt


def warm_start(path: str, model: torch.nn.Module, ema: Optional[ExponentialMovingAverage],
               device: torch.device) -> None:
    """Loads the weights of :func:`load_weights` into :obj:`model` (and its
    weight average); the optimizer and schedule start afresh."""
    weights = load_weights(path, device)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise ValueError(f"--init-from {path!r} holds weights of another model "
                         f"(its flags must match this run's): {e}") from None
    if ema is not None:
        ema.module.load_state_dict(weights)
