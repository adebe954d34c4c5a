"""One training run from a :class:`~acn_pyg.train.Config`: data, model,
optimizer, the loop, the test and the reports."""
import os
from contextlib import nullcontext
from dataclasses import asdict
from typing import Dict, Optional

import torch
from torch import Tensor

from acn_pyg.inference.checkpoint import QM9_ENERGIES, build, save_model, state_dict_of
from acn_pyg.train import distributed
from acn_pyg.train.checkpoints import TrainState, restore_last, warm_start
from acn_pyg.train.config import ANISOTROPIC_GRADIENT, Config, check_config
from acn_pyg.train.data import (Prepared, element_counts, make_loaders, molecule_arrays,
                                prepare)
from acn_pyg.train.losses import DenoisingLoss
from acn_pyg.train.loop import Trainer, predict, train
from acn_pyg.train.report import (forces_parity_plot, learning_curve_plot, machine, parity_plot,
                                  with_energy_units, write_metrics)
from acn_pyg.train.tasks import EnergyForcesTask, PropertyTask
from acn_pyg.utils.ema import ExponentialMovingAverage
from acn_pyg.utils.io import RunLock, load_checkpoint
from acn_pyg.utils.memory import reuse_freed_memory


def pick_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def model_spec(cfg: Config, extensive: bool, mean: float, std: float,
               atomref: Optional[Tensor], output: str = "scalar",
               head_std: Optional[float] = None) -> Dict[str, object]:
    """The :func:`acn_pyg.inference.build` spec of :func:`build_model`: the
    model's name and constructor arguments, as a checkpoint stores them."""
    if cfg.model == "acn":
        kwargs = dict(hidden_channels=cfg.hidden_channels, hidden_irreps=cfg.hidden_irreps,
                      num_layers=cfg.num_layers, cutoff=cfg.cutoff, lmax=cfg.lmax,
                      product_channels=cfg.product_channels,
                      product_correlation=cfg.product_correlation,
                      element_dependent=cfg.element_dependent,
                      product_basis=cfg.product_basis, input_linear=cfg.input_linear,
                      self_interaction_rank=cfg.self_interaction_rank,
                      scalar_activation=cfg.scalar_activation, radial_gain=cfg.radial_gain,
                      embedding_std=cfg.embedding_std, residual=cfg.residual,
                      weight_norm=cfg.weight_norm,
                      many_body=cfg.many_body, pooling="add" if extensive else "mean",
                      mean=mean, std=std, atomref=atomref, output=output)
        if head_std is not None:
            kwargs["head_std"] = head_std
        if output == "tensor":
            kwargs["anisotropic_gradient"] = (ANISOTROPIC_GRADIENT if cfg.anisotropic_gradient
                                              is None else cfg.anisotropic_gradient)
    else:
        kwargs = dict(extensive=extensive, mean=mean, std=std,
                      atomref=None if atomref is None else atomref.float())
    return {"name": cfg.model, "kwargs": kwargs}


def build_model(cfg: Config, extensive: bool, mean: float, std: float,
                atomref: Optional[Tensor], output: str = "scalar",
                head_std: Optional[float] = None) -> torch.nn.Module:
    """The model of :obj:`cfg`: AtomCloudNet (with the head :obj:`output`),
    or a PyG baseline with its published QM9 settings; summed over atoms for
    extensive targets."""
    return build(model_spec(cfg, extensive, mean, std, atomref, output, head_std))


def prepared_spec(cfg: Config, prep: Prepared) -> Dict[str, object]:
    """:func:`model_spec` for the data :obj:`prep` of :func:`prepare`: its
    scale, atom reference and head."""
    return model_spec(cfg, prep.extensive, prep.mean, prep.std, prep.atomref, prep.output,
                      prep.head_std)


def checkpoint_info(cfg: Config, prep: Prepared) -> Dict[str, object]:
    """What the run's ``best.pt`` holds beside the weights
    (:func:`acn_pyg.inference.save_model`'s arguments): the model's spec,
    its target and unit, whether it is an energy, the training elements and
    the config."""
    files = isinstance(prep.task, EnergyForcesTask)
    energy = files or (cfg.on_qm9 and prep.name in QM9_ENERGIES)
    return dict(spec=prepared_spec(cfg, prep),
                target="energy" if files else prep.name, unit=prep.unit, energy=energy,
                elements=prep.elements, config=asdict(cfg))


def load_best_model(run_dir: str, cfg: Config, prep: Prepared, device) -> torch.nn.Module:
    """The model of a finished run (:obj:`cfg`, from
    :func:`~acn_pyg.train.run_config`, on the data :obj:`prep` of
    :func:`~acn_pyg.train.prepare`) with the weights of its ``best.pt``."""
    best = os.path.join(run_dir, "best.pt")
    if not os.path.exists(best):
        raise FileNotFoundError(f"{best} not found: the run saved no checkpoint")
    model = build(prepared_spec(cfg, prep)).to(device)
    model.load_state_dict(state_dict_of(load_checkpoint(best, device)))
    return model


def _setup(cfg: Config, device: Optional[torch.device] = None) -> torch.device:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device) if device is None else device
    if device.type == "cpu" and cfg.reuse_memory:
        # Large per-step tensors are then not page-faulted afresh each step.
        reuse_freed_memory()
    # The split follows cfg.seed; initialisation and shuffling follow
    # cfg.init_seed (default: the same), so seeds can vary on one test set.
    torch.manual_seed(cfg.initial_seed)
    return device


def _trainer(cfg: Config, prep: Prepared, device: torch.device) -> Trainer:
    model = build(prepared_spec(cfg, prep)).to(device)
    # Built after the model, so the model starts from the same weights with
    # and without it.
    aux = ({"denoise": DenoisingLoss(model.hidden_channels, cfg.cutoff, cfg.denoise_sigma,
                                     cfg.denoise_weight).to(device)}
           if cfg.denoise_weight > 0 else {})
    params = list(model.parameters()) + [p for term in aux.values() for p in term.parameters()]
    fused = True if device.type == "cuda" else None  # one kernel on a GPU, same update
    optimizer = (torch.optim.AdamW(params, lr=cfg.peak_lr, weight_decay=cfg.weight_decay,
                                   fused=fused)
                 if cfg.weight_decay > 0 else torch.optim.Adam(params, lr=cfg.peak_lr,
                                                               fused=fused))
    ema = ExponentialMovingAverage(model, cfg.ema) if cfg.ema > 0 else None
    # The step runs the replica of a distributed run; it shares the
    # parameters of `model`, which the weight average, checkpoints and
    # evaluation use eagerly, and so does its compiled version.
    step_model = distributed.wrap(model, device)
    step_model = torch.compile(step_model, dynamic=True) if cfg.compile else step_model
    return Trainer(model, step_model, optimizer, ema, aux, prep.task)


def _start(cfg: Config, tr: Trainer, shuffle_rng: torch.Generator, device: torch.device,
           steps_per_epoch: int) -> TrainState:
    last_path = os.path.join(cfg.out, "last.pt")
    # Rank 0 reads it and sends it to the others: no shared disk needed.
    ckpt = (distributed.load_on_main(last_path, lambda path: load_checkpoint(path, "cpu"))
            if cfg.resume else None)
    if ckpt is not None:
        state = restore_last(last_path, cfg, tr.model, tr.optimizer, tr.ema, shuffle_rng,
                             tr.aux_losses.get("denoise"), device, steps_per_epoch, ckpt)
        _say(f"resumed from {last_path} at epoch {state.epoch} "
             f"({state.elapsed / 60:.1f} min trained)")
        return state
    if cfg.init_from is not None:
        warm_start(cfg.init_from, tr.model, tr.ema, device)
        _say(f"initialised from {cfg.init_from}")
    return TrainState()


def _say(text: str) -> None:
    """Prints :obj:`text` once: on rank 0 of a distributed run."""
    if distributed.is_main():
        print(text)


def _load_best(cfg: Config, model: torch.nn.Module, device) -> None:
    """Loads the run's ``best.pt`` into :obj:`model`, when the run saved one."""
    best = distributed.load_on_main(os.path.join(cfg.out, "best.pt"),
                                    lambda path: load_checkpoint(path, "cpu"))
    if best is not None:
        model.load_state_dict(state_dict_of(best))


def _training_loader(cfg: Config, prep: Prepared):
    """The training molecules, in order: the tested model on them, beside
    its validation error, tells underfitting (both high) from overfitting."""
    from torch_geometric.loader import DataLoader
    return DataLoader(prep.dataset[distributed.shard(prep.split["train"])],
                      batch_size=cfg.batch_size)


def _run_record(cfg: Config, prep: Prepared, tr: Trainer, loaders, device, state: TrainState,
                wall: float) -> Dict[str, object]:
    """The metrics every run writes beside its errors: how long it trained,
    on what, and its validation history."""
    # The validation MAE of the kept checkpoint (chosen on the task's score).
    select = getattr(tr.task, "select", "val_mae")
    kept = [h["val_mae"] for h in state.history if h.get(select) == state.best_val]
    return {"best_val_mae": kept[0] if kept else state.best_val, "epochs": state.epoch,
            "steps": state.steps,
            "epochs_trained": state.steps / max(len(loaders["train"]), 1), "wall_time_s": wall,
            "sizes": {k: int(v.numel()) for k, v in prep.split.items()},
            "parameters": sum(p.numel() for p in tr.model.parameters()),
            "device": str(device), "processes": distributed.world_size(),
            "machine": machine(), "config": asdict(cfg),
            "history": state.history}


def _task_errors(cfg: Config, prep: Prepared, model: torch.nn.Module, loaders, device):
    """The best checkpoint's predictions on the test structures, and the
    errors of the task (:meth:`predict`, :meth:`errors`) on them and on the
    training structures."""
    _load_best(cfg, model, device)
    pred = prep.task.predict(model, loaders["test"], device)
    fit = prep.task.errors(prep.task.predict(model, _training_loader(cfg, prep), device))
    return pred, prep.task.errors(pred), fit


def _test(cfg: Config, prep: Prepared, model: torch.nn.Module, loaders, device):
    _load_best(cfg, model, device)
    pred, true = predict(model, loaders["test"], prep.t_index, device)
    fit_pred, fit_true = predict(model, _training_loader(cfg, prep), prep.t_index, device)
    return pred, true, float((fit_pred - fit_true).abs().mean())


def run(cfg: Config) -> Dict[str, object]:
    """Trains one model on one target of QM9 as :obj:`cfg` says, tests its
    best checkpoint, and returns its metrics; writes ``metrics.json``,
    ``best.pt``, ``last.pt`` and (with :obj:`cfg.plot`) ``parity.png`` and
    ``learning_curve.png`` to :obj:`cfg.out`, which it locks
    (:class:`~acn_pyg.utils.io.RunLock`) while it runs."""
    check_config(cfg)
    if not distributed.requested():
        with RunLock(cfg.out):
            return _run(cfg)
    device = distributed.setup(cfg.device)
    try:
        distributed.check_config(cfg)
        with RunLock(cfg.out) if distributed.is_main() else nullcontext():
            metrics = _run(cfg, device)
    except BaseException:
        distributed.teardown(wait=False)
        raise
    distributed.teardown()
    return metrics


def _run(cfg: Config, device: Optional[torch.device] = None) -> Dict[str, object]:
    device = _setup(cfg, device)
    # Rank 0 prepares first: it writes any processed cache the others read.
    if not distributed.is_main():
        distributed.barrier()
    prep = prepare(cfg)
    if distributed.is_main():
        distributed.barrier()
    tr = _trainer(cfg, prep, device)
    loaders, shuffle_rng = make_loaders(cfg, prep, device)
    state = _start(cfg, tr, shuffle_rng, device, len(loaders["train"]))
    info = checkpoint_info(cfg, prep)
    wall = train(tr, loaders, device, state, cfg, shuffle_rng, unit=prep.unit,
                 desc=f"{cfg.model} {prep.name}",
                 save_best=lambda model, path: save_model(path, model, **info))
    if not isinstance(prep.task, (PropertyTask, EnergyForcesTask)):
        return _report_structured_run(cfg, prep, tr, loaders, device, state, wall)
    if not cfg.on_qm9:
        return _report_file_run(cfg, prep, tr, loaders, device, state, wall)

    pred, true, train_mae = _test(cfg, prep, tr.evaluated, loaders, device)
    test_mae = float((pred - true).abs().mean())
    base_pred = prep.baseline_prediction("test")
    metrics = with_energy_units({
        "target": prep.name, "unit": prep.unit, "model": cfg.model,
        "test_mae": test_mae, "baseline_test_mae": float((base_pred - true).abs().mean()),
        "train_mae": train_mae, **_run_record(cfg, prep, tr, loaders, device, state, wall),
    })
    if not distributed.is_main():  # rank 0 writes the run's files
        return metrics
    write_metrics(metrics, cfg.out)
    if cfg.plot:
        title = f"{cfg.model} on QM9 {prep.name}"
        parity_plot(pred, true, base_pred, f"{title}: test MAE {test_mae:.4g} {prep.unit}",
                    prep.unit, os.path.join(cfg.out, "parity.png"))
        learning_curve_plot(state.history, prep.std, title, prep.unit,
                            os.path.join(cfg.out, "learning_curve.png"))
    return metrics


def _report_file_run(cfg: Config, prep: Prepared, tr: Trainer, loaders, device,
                     state: TrainState, wall: float) -> Dict[str, object]:
    """Tests the best checkpoint of a run on a structure file: energy and
    force errors on the test and training structures, metrics and plots."""
    pred, errors, fit = _task_errors(cfg, prep, tr.evaluated, loaders, device)
    metrics = {
        "data": cfg.data, "target": prep.name, "unit": "eV", "forces_unit": "eV/A",
        "model": cfg.model, **{f"test_{k}": v for k, v in errors.items()},
        **{f"train_{k}": v for k, v in fit.items()},
        **_run_record(cfg, prep, tr, loaders, device, state, wall)}
    base = None
    if prep.baseline is not None:
        base = prep.baseline_prediction("test")
        metrics["baseline_test_energy_mae"] = float((base - pred["energy_ref"]).abs().mean())
    if not distributed.is_main():  # rank 0 writes the run's files
        return metrics
    write_metrics(metrics, cfg.out)
    if cfg.plot:
        title = f"{cfg.model} on {os.path.basename(cfg.data)}"
        if base is not None:
            parity_plot(pred["energy"], pred["energy_ref"], base,
                        f"{title}: test energy MAE {errors['energy_mae']:.4g} eV", "eV",
                        os.path.join(cfg.out, "parity.png"))
        if "forces_ref" in pred:
            forces_parity_plot(pred["forces"], pred["forces_ref"],
                               f"{title}: test force MAE {errors['forces_mae']:.4g} eV/A",
                               os.path.join(cfg.out, "forces_parity.png"))
        learning_curve_plot(state.history, prep.std, title, "eV, eV/A",
                            os.path.join(cfg.out, "learning_curve.png"))
    return metrics


def _structured_baseline(prep: Prepared, true: Tensor) -> Tensor:
    """The reference model's prediction on the test set, in the layout of
    :obj:`true`: each element's mean charge, the isotropic per-element fit
    (as three equal principal values), or the training molecules' mean
    dipole magnitude."""
    z, batch, _ = molecule_arrays(prep.dataset, prep.split["test"], "idx")
    if prep.name == "charges":
        return prep.atomref[z]
    if prep.name == "polarizability":  # an isotropic tensor
        iso = prep.baseline.predict(element_counts(z, batch, prep.split["test"].numel(),
                                                   prep.baseline.elements))
        if true.size(-1) == 3:  # three equal principal values
            return iso[:, None].expand(-1, 3)
        return (iso[:, None, None] * torch.eye(3, dtype=iso.dtype)).reshape(-1, 9)
    if prep.name == "dipole":  # no dipole
        return torch.zeros_like(true)
    _, _, mu = molecule_arrays(prep.dataset, prep.split["train"], prep.t_index)
    return torch.full_like(true, float(mu.double().mean()))


def _report_structured_run(cfg: Config, prep: Prepared, tr: Trainer, loaders, device,
                           state: TrainState, wall: float) -> Dict[str, object]:
    """Tests the best checkpoint of a run on per-atom charges, a
    polarizability tensor, a dipole vector or QM9's dipole magnitude."""
    pred, errors, fit = _task_errors(cfg, prep, tr.evaluated, loaders, device)
    base = _structured_baseline(prep, pred["true"])
    metrics = {"target": prep.name, "unit": prep.unit, "model": cfg.model, "output": prep.output,
               **{f"test_{k}": v for k, v in errors.items()},
               "train_mae": fit["mae"],
               "baseline_test_mae": float((base - pred["true"]).abs().mean()),
               **_run_record(cfg, prep, tr, loaders, device, state, wall)}
    if not cfg.on_qm9:
        metrics["data"] = cfg.data
    if not distributed.is_main():  # rank 0 writes the run's files
        return metrics
    write_metrics(metrics, cfg.out)
    if cfg.plot:
        what = {"charges": "atom charges", "dipole": "dipole components",
                "polarizability": "principal values" if cfg.on_qm9 else "tensor components"
                }.get(prep.name, "dipole magnitudes")
        source = "QM9" if cfg.on_qm9 else os.path.basename(cfg.data)
        title = f"{cfg.model} on {source} {prep.name}: test MAE {errors['mae']:.4g} {prep.unit}"
        parity_plot(pred["pred"].reshape(-1), pred["true"].reshape(-1), None, title, prep.unit,
                    os.path.join(cfg.out, "parity.png"), what=f"test {what}")
        learning_curve_plot(state.history, prep.std, f"{cfg.model} on {source} {prep.name}",
                            prep.unit, os.path.join(cfg.out, "learning_curve.png"))
    return metrics
