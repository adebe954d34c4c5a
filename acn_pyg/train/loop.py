"""The training loop, as small functions: :func:`take_step` (one optimizer
step), :func:`train_one_epoch`, :func:`evaluate` and :func:`train` (epochs
under a time budget, with validation, checkpoints and a progress bar). Each
is handed what it uses: model, optimizer, weight average, loss terms."""
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor
from tqdm import tqdm

from acn_pyg.train import distributed
from acn_pyg.train.checkpoints import TrainState, save_last
from acn_pyg.train.config import Config
from acn_pyg.utils.ema import ExponentialMovingAverage
from acn_pyg.utils.io import atomic_save


def lr_factor(progress: float, warmup: float = 0.0) -> float:
    r"""The learning rate's schedule over a run's progress :math:`p \in [0, 1]`
    (whichever runs out first, epochs or time): cosine decay to 1% of the peak,

    .. math::
        f(p) = \min\left(1, \frac{p}{w}\right) \left(0.01 + 0.99\,
        \frac{1 + \cos \pi p}{2}\right),

    times a linear warm-up over the first fraction :math:`w` (:obj:`warmup`;
    none when 0), which starts at 1% of the peak."""
    factor = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))
    if warmup > 0 and progress < warmup:
        factor *= max(progress / warmup, 0.01)
    return factor


@torch.no_grad()
def predict(model: torch.nn.Module, loader, target: int, device) -> Tuple[Tensor, Tensor]:
    """Predictions and reference values of column :obj:`target` over
    :obj:`loader`, in its order, as float64 on the CPU; the model is put back
    in training mode after. In a distributed run each rank predicts its
    shard and every rank gets them all, in order
    (:func:`~acn_pyg.train.distributed.gather`)."""
    model.eval()
    preds, trues = [], []
    for batch in loader:  # kept on the device: one transfer at the end, no sync per batch
        batch = batch.to(device, non_blocking=True)
        preds.append(model(batch.z, batch.pos, batch.batch).view(-1).double())
        trues.append(batch.y[:, target].double())
    model.train()
    return (distributed.gather(torch.cat(preds).cpu()),
            distributed.gather(torch.cat(trues).cpu()))


def evaluate(model: torch.nn.Module, loader, target: int, device) -> float:
    """The mean absolute error of :obj:`model` over :obj:`loader`."""
    pred, true = predict(model, loader, target, device)
    return float((pred - true).abs().mean())


@dataclass
class Trainer:
    """What a training step uses: the trained model (:obj:`step_model` is
    the same module, or its :func:`torch.compile`), the optimizer, the weight
    average, the auxiliary loss terms (each with a :obj:`weight`) and the
    task (:mod:`~acn_pyg.train.tasks`: its loss and validation)."""
    model: torch.nn.Module
    step_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: Optional[ExponentialMovingAverage]
    aux_losses: Dict[str, torch.nn.Module]
    task: object

    @property
    def evaluated(self) -> torch.nn.Module:
        """The model validated, tested and kept in ``best.pt``: the weight
        average when there is one."""
        return self.ema.module if self.ema is not None else self.model


def take_step(tr: Trainer, data) -> Tuple[Tensor, Dict[str, Tensor]]:
    """One optimizer step on batch :obj:`data`; returns the target loss and
    each auxiliary loss, detached and on the device (no host sync)."""
    tr.optimizer.zero_grad()
    loss = tr.task.loss(tr.step_model, data)
    total, aux = loss, {}
    for name, term in tr.aux_losses.items():
        value = term(tr.model, data)
        aux[name] = value.detach()
        total = total + term.weight * value
    total.backward()
    tr.optimizer.step()
    if tr.ema is not None:
        tr.ema.update_parameters(tr.model)
    return loss.detach(), aux


def train_one_epoch(tr: Trainer, loader, device, progress: Callable[[int], float],
                    set_lr: Callable[[float], None],
                    on_step: Callable[[float], None] = lambda p: None
                    ) -> Tuple[Dict[str, float], int, bool]:
    """One pass over :obj:`loader`, stopped early when :obj:`progress` (of
    the step about to be taken) reaches 1. Returns the mean losses per
    molecule (``train_loss`` and ``train_<name>_loss`` of each auxiliary
    term), the molecules seen and whether the run is out of time."""
    running = torch.zeros((), device=device)
    aux_running = {name: torch.zeros((), device=device) for name in tr.aux_losses}
    seen, steps = 0, 0
    for step, data in enumerate(loader):
        p = progress(step)
        if p >= 1.0:
            return _means(running, aux_running, seen), steps, True
        set_lr(p)
        on_step(p)
        data = data.to(device, non_blocking=True)
        loss, aux = take_step(tr, data)
        running += loss * data.num_graphs
        for name, value in aux.items():
            aux_running[name] += value * data.num_graphs
        seen += data.num_graphs
        steps += 1
    return _means(running, aux_running, seen), steps, False


def _means(running: Tensor, aux: Dict[str, Tensor], seen: int) -> Dict[str, float]:
    if distributed.is_distributed():  # the means over every rank's molecules
        sums = distributed.all_sum(torch.stack([running, *aux.values(),
                                                running.new_tensor(float(seen))]))
        running, aux, seen = sums[0], dict(zip(aux, sums[1:-1])), int(sums[-1])
    if seen == 0:
        return {}
    means = {"train_loss": float(running) / seen}
    means.update({f"train_{name}_loss": float(value) / seen for name, value in aux.items()})
    return means


class _Progress:
    """The progress bar of :func:`train`: it tracks the time budget (or the
    epochs when there is no budget) through the schedule's progress."""

    def __init__(self, desc: str, budget_s: float, epochs: int, start: float,
                 disable: bool = False):
        self.timed = math.isfinite(budget_s)
        self.total = budget_s if self.timed else float(epochs)
        self.bar = tqdm(total=round(self.total, 1), desc=desc, unit="s" if self.timed else "ep",
                        disable=disable,
                        initial=round(min(start, 1.0) * self.total, 1),
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                                   "[{elapsed}<{remaining}{postfix}]")

    def update(self, progress: float) -> None:
        # Set, not added up: rounding cannot carry the bar past its total.
        self.bar.n = round(min(progress, 1.0) * self.total, 1)
        self.bar.update(0)  # redraws, at most every tqdm.mininterval

    def show(self, text: str) -> None:
        self.bar.set_postfix_str(text)

    def close(self, progress: float) -> None:
        self.update(progress)
        self.bar.close()


def train(tr: Trainer, loaders, device, state: TrainState, cfg: Config,
          shuffle_rng: torch.Generator, unit: str = "", desc: str = "train",
          save_best: Optional[Callable[[torch.nn.Module, str], None]] = None) -> float:
    """Trains until :obj:`cfg.epochs` are done or its time budget has passed
    (the learning rate follows :func:`lr_factor` from :obj:`cfg.peak_lr`
    over whichever runs out first), validating every so many epochs, keeping
    the best weights in ``cfg.out/best.pt`` (written by :obj:`save_best`
    (model, path); default: the bare state dict) and everything in
    ``cfg.out/last.pt`` after every epoch. Updates :obj:`state` and returns
    the training wall time in seconds.

    In a distributed run (:mod:`~acn_pyg.train.distributed`) every rank
    calls it: the clock's progress is rank 0's, validation is computed over
    the ranks, and rank 0 alone writes the checkpoints."""
    epochs, budget_s = cfg.epochs, cfg.budget_s
    steps_per_epoch = len(loaders["train"])
    total_steps = max(epochs * steps_per_epoch, 1)
    # Validate about as often as it costs no more than the training it follows.
    eval_every = max(1, math.ceil(distributed.total(len(loaders["val"].dataset))
                                  / max(len(loaders["train"].dataset), 1)))
    start = time.perf_counter() - state.elapsed
    best_path, last_path = os.path.join(cfg.out, "best.pt"), os.path.join(cfg.out, "last.pt")

    main = distributed.is_main()
    agree = distributed.agree if math.isfinite(budget_s) else (lambda value: value)

    def progress(step: int) -> float:
        # Rank 0's clock: the schedule and the end are the same on every replica.
        return max((state.epoch * steps_per_epoch + step) / total_steps,
                   agree((time.perf_counter() - start) / budget_s))

    def set_lr(p: float) -> None:
        for group in tr.optimizer.param_groups:
            group["lr"] = cfg.peak_lr * lr_factor(p, cfg.warmup)

    def validate(losses: Dict[str, float]) -> None:
        scores = tr.task.validate(tr.evaluated, loaders["val"], device)
        # The task's selection score (val_mae unless the task names another).
        score = scores[getattr(tr.task, "select", "val_mae")]
        state.history.append({"epoch": state.epoch, **losses, **scores,
                              "time_s": round(time.perf_counter() - start, 1)})
        if score < state.best_val:
            state.best_val = score
            if main:  # rank 0 writes the files
                if save_best is None:
                    atomic_save(tr.evaluated.state_dict(), best_path)
                else:
                    save_best(tr.evaluated, best_path)

    bar = _Progress(desc, budget_s, epochs, progress(0), disable=not main)
    out_of_time = state.elapsed >= budget_s
    while state.epoch < epochs and not out_of_time:
        losses, steps, out_of_time = train_one_epoch(tr, loaders["train"], device, progress,
                                                     set_lr, bar.update)
        if steps == 0:
            break
        state.steps += steps
        state.epoch += 1
        if state.epoch % eval_every == 0 or out_of_time or state.epoch >= epochs:
            validate(losses)
        state.elapsed = agree(time.perf_counter() - start)
        if main:
            save_last(last_path, cfg, tr.model, tr.optimizer, tr.ema, state, shuffle_rng,
                      tr.aux_losses.get("denoise"))
        bar.update(progress(0))
        bar.show(_postfix(state, unit))
    if state.epoch > 0 and (not state.history or state.history[-1]["epoch"] < state.epoch):
        validate({"train_loss": None})  # no epoch ended since the last validation
    bar.close(progress(0))
    distributed.barrier()  # the files are written before any rank reads them
    return time.perf_counter() - start


def _postfix(state: TrainState, unit: str) -> str:
    text = f"epoch {state.epoch}"
    if state.history:
        last = state.history[-1]
        if last.get("train_loss") is not None:
            text += f", loss {last['train_loss']:.4f}"
        text += f", val MAE {last['val_mae']:.4g} {unit}"
    return text
