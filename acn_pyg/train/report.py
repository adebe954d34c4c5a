"""What a run reports: ``metrics.json``, a text summary, the parity plot and
the learning-curve plot, and the helpers that read finished runs back."""
import json
import math
import os
import platform
from typing import Dict, List, Optional

import torch
from torch import Tensor

from acn_pyg.datasets.qm9 import ENERGY_TARGETS
from acn_pyg.train.config import Config
from acn_pyg.units import EV_TO_KCALMOL, EV_TO_MEV


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; else what
    :func:`platform.processor` says): machines of one kind can still have
    different CPUs, and their speeds differ."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> Dict[str, object]:
    """Platform, CPU, Python, torch, threads and GPU of this process."""
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu": cpu_model(),
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def with_energy_units(metrics: Dict[str, object]) -> Dict[str, object]:
    """Adds the errors in kcal/mol and meV when the target is an energy in eV."""
    if metrics["target"] in ENERGY_TARGETS:
        metrics["test_mae_kcal_mol"] = metrics["test_mae"] * EV_TO_KCALMOL
        metrics["test_mae_meV"] = metrics["test_mae"] * EV_TO_MEV
        metrics["baseline_test_mae_kcal_mol"] = metrics["baseline_test_mae"] * EV_TO_KCALMOL
        metrics["train_mae_kcal_mol"] = metrics["train_mae"] * EV_TO_KCALMOL
    return metrics


def strict_json(value):
    """:obj:`value` with every NaN or infinite float replaced by
    :obj:`None`, so that it is valid JSON (which has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_metrics(metrics: Dict[str, object], out: str) -> str:
    """Writes :obj:`metrics` as strict JSON to ``out/metrics.json``."""
    path = os.path.join(out, "metrics.json")
    with open(path, "w") as f:
        json.dump(strict_json(metrics), f, indent=2, allow_nan=False)
    return path


def load_run(run_dir: str) -> Dict[str, object]:
    """The ``metrics.json`` of a finished run (its results and config)."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: {run_dir!r} is not a finished run")
    with open(path) as f:
        return json.load(f)


def run_config(metrics: Dict[str, object]) -> Config:
    """The :class:`Config` a run was trained with, from its metrics (fields
    this version no longer has are left out)."""
    known = set(Config.__dataclass_fields__)
    values = {k: v for k, v in metrics["config"].items() if k in known}
    values.setdefault("output", "scalar")  # runs before the output heads learned scalars
    return Config(**values)


def epochs_trained(metrics: Dict[str, object]) -> float:
    """How many epochs a finished run trained: optimizer steps over steps per
    epoch (``epochs_trained``), a fraction when the time budget cut the last
    short; ``epochs`` (the epochs begun) for metrics that lack it."""
    trained = metrics.get("epochs_trained")
    return float(metrics["epochs"] if trained is None else trained)


def epochs_cell(metrics: Dict[str, object]) -> str:
    """:func:`epochs_trained` for a table: ``"134"``, ``"9.61"``."""
    return f"{round(epochs_trained(metrics), 2):g}"


def epochs_text(metrics: Dict[str, object]) -> str:
    """How long a finished run trained, in epochs: ``"17 epochs"``, or
    ``"16.31 epochs (the last cut short by the time budget)"`` when the
    budget ran out during an epoch."""
    trained = metrics.get("epochs_trained")
    if trained is not None and trained < metrics["epochs"] - 1e-9:
        return f"{trained:.2f} epochs (the last cut short by the time budget)"
    return f"{metrics['epochs']} epochs"


def summary(metrics: Dict[str, object]) -> List[str]:
    """The lines the training program prints at the end of a run."""
    if "data" in metrics and "test_mae" not in metrics:
        return _file_summary(metrics)
    unit = metrics["unit"]
    lines = [f"test MAE ({metrics['model']}, {metrics['target']}): "
             f"{metrics['test_mae']:.5g} {unit}"]
    if "test_mae_kcal_mol" in metrics:
        lines.append(f"          = {metrics['test_mae_kcal_mol']:.4g} kcal/mol "
                     f"= {metrics['test_mae_meV']:.4g} meV")
    if "test_isotropic_mae" in metrics:
        lines.append(f"          isotropic part (trace / 3, QM9's alpha): "
                     f"{metrics['test_isotropic_mae']:.5g} {unit}")
    if "train_mae" in metrics:
        lines.append(f"same model on its training molecules: {metrics['train_mae']:.5g} {unit}, "
                     f"best validation {metrics['best_val_mae']:.5g} {unit}")
    ratio = metrics["baseline_test_mae"] / max(metrics["test_mae"], 1e-12)
    compared = (f"the model is {ratio:.1f}x better" if ratio >= 1.0
                else f"the model is {1.0 / ratio:.1f}x worse: train longer")
    lines.append(f"per-element linear baseline: {metrics['baseline_test_mae']:.5g} {unit} "
                 f"({compared})")
    lines.append(f"{epochs_text(metrics)} in {metrics['wall_time_s'] / 60:.1f} min on "
                 f"{metrics['device']} ({metrics['sizes']['train']} training molecules)")
    return lines


def _file_summary(metrics: Dict[str, object]) -> List[str]:
    lines = []
    for key, unit, what in (("energy", "eV", "energy"), ("forces", "eV/A", "forces")):
        if f"test_{key}_mae" in metrics:
            lines.append(f"test {what} ({metrics['model']}): MAE {metrics[f'test_{key}_mae']:.5g} "
                         f"{unit}, RMSE {metrics[f'test_{key}_rmse']:.5g} {unit}; on its "
                         f"training structures MAE {metrics[f'train_{key}_mae']:.5g} {unit}")
    if "test_energy_per_atom_mae" in metrics:
        lines.append(f"test energy MAE per atom: {metrics['test_energy_per_atom_mae']:.5g} eV")
    if "baseline_test_energy_mae" in metrics:
        lines.append(f"per-element linear baseline: energy MAE "
                     f"{metrics['baseline_test_energy_mae']:.5g} eV")
    lines.append(f"{epochs_text(metrics)} in {metrics['wall_time_s'] / 60:.1f} min on "
                 f"{metrics['device']} ({metrics['sizes']['train']} training structures)")
    return lines


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def parity_figure(pred: Tensor, true: Tensor, baseline: Optional[Tensor], title: str,
                  unit: str, what: str = "test molecules", quantity: str = ""):
    """Two panels: predicted against reference, both less the per-element
    linear baseline :obj:`baseline` (so the part the model learns fills the
    axes and its error is visible; :obj:`None` for none), and the histogram
    of the errors of the :obj:`what` (its y label). :obj:`quantity` names
    what is plotted on the axes (e.g. ``"force component"``)."""
    plt = _pyplot()
    less = "" if baseline is None else " - per-element baseline"
    name = f" {quantity}" if quantity else ""
    x, y = true.reshape(-1), pred.reshape(-1)
    if baseline is not None:
        x, y = x - baseline, y - baseline
    x, y = x.numpy(), y.numpy()
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(9, 4.2))
    ax.scatter(x, y, s=4, alpha=0.5)
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel(f"reference{name}{less} ({unit})")
    ax.set_ylabel(f"predicted{name}{less} ({unit})")
    hist.hist((pred - true).reshape(-1).numpy(), bins=60)
    hist.axvline(0.0, color="k", lw=0.8)
    hist.set_xlabel(f"predicted - reference ({unit})")
    hist.set_ylabel(what)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def parity_plot(pred: Tensor, true: Tensor, baseline: Optional[Tensor], title: str, unit: str,
                path: str, what: str = "test molecules", quantity: str = "") -> None:
    """Saves :func:`parity_figure` to :obj:`path`."""
    _save(parity_figure(pred, true, baseline, title, unit, what, quantity), path)


def forces_parity_plot(pred: Tensor, true: Tensor, title: str, path: str) -> None:
    """:func:`parity_plot` of force components (eV/A), saved to :obj:`path`."""
    parity_plot(pred, true, None, title, "eV/A", path, what="test force components",
                quantity="force component")


def _save(fig, path: str) -> None:
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def learning_curve_plot(history: List[Dict[str, float]], std: float, title: str, unit: str,
                        path: str) -> None:
    """Training loss (the running mean absolute error over each epoch, in
    the target's unit: the loss times the target's scale :obj:`std`) and
    validation MAE per epoch, on a log scale."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    split = [k for k in ("val_energy_mae", "val_forces_mae") if history and k in history[0]]
    if split:  # energies and forces: their validation errors
        for key in split:
            ax.plot([h["epoch"] for h in history], [h[key] for h in history], "o-", ms=2,
                    label=f"validation {key[4:-4]}")
    else:
        trained = [h for h in history if h.get("train_loss") is not None]
        ax.plot([h["epoch"] for h in trained], [h["train_loss"] * std for h in trained], "o-",
                ms=2, label="training (running, during the epoch)")
        ax.plot([h["epoch"] for h in history], [h["val_mae"] for h in history], "o-", ms=2,
                label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"mean absolute error ({unit})")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
