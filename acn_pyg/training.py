"""Training on QM9: splits, a per-element linear baseline, model factory and a
time-budgeted training loop with checkpoints. Drives ``examples/qm9.py`` and
the benchmarks, so every model is trained by the same loop."""
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor
from tqdm import tqdm

from acn_pyg.datasets.qm9 import ENERGY_TARGETS, QM9, TARGETS, UNITS, target_index
from acn_pyg.datasets.qm9_subset import QM9Subset
from acn_pyg.models import AtomCloudNet, grown_state_dict
from acn_pyg.models.grow import state_num_layers
from acn_pyg.nn.denoising_head import DenoisingHead, centered_noise, denoising_loss
from acn_pyg.units import EV_TO_KCALMOL, EV_TO_MEV
from acn_pyg.utils.ema import ExponentialMovingAverage, averaged_module_state
from acn_pyg.utils.memory import reuse_freed_memory

#: Targets that grow with the molecule: summed over atoms, with an element baseline.
EXTENSIVE_TARGETS = frozenset(("alpha", "r2", "zpve", "U0", "U", "H", "G", "cv", "U0_atom",
                               "U_atom", "H_atom", "G_atom"))
#: The targets that ``--stationary-weight`` applies to: QM9's geometries are
#: minima of its B3LYP electronic energy, which these energies contain. (Their
#: zero-point and thermal parts are not stationary there; their gradients are
#: what the penalty gets wrong.)
STATIONARY_TARGETS = frozenset(("U0", "U", "H", "G", "U0_atom", "U_atom", "H_atom", "G_atom"))
MODELS = ("acn", "schnet", "dimenet++", "dimenet")
#: Peak learning rate per model when none is given: 3e-3 for AtomCloudNet
#: (better than 1e-3 in a measured QM9 U0 run), the published 1e-3 for the
#: baselines (SchNet diverged at 3e-3).
DEFAULT_LR = {"acn": 3e-3, "schnet": 1e-3, "dimenet++": 1e-3, "dimenet": 1e-3}
#: The element columns of the linear baseline (QM9 has H, C, N, O, F).
ELEMENTS = (1, 6, 7, 8, 9)


@dataclass
class Config:
    """Everything a run depends on; saved with every checkpoint and result."""
    target: str = "U0"
    model: str = "acn"
    train_size: int = 1000
    val_size: int = 500
    test_size: int = 1000
    epochs: int = 1000
    time_budget: float = 3.0
    batch_size: int = 32
    lr: Optional[float] = None
    weight_decay: float = 0.0
    ema: float = 0.99
    warmup: float = 0.0
    stationary_weight: float = 0.0
    denoise_weight: float = 0.0
    #: 0.1 since version 0.2.12 (0.05 before): it beat 0.05 on each of 9
    #: paired seeds at 100 and 1,000 molecules (benchmarks/results/denoise_*).
    denoise_sigma: float = 0.1
    device: str = "auto"
    seed: int = 0
    init_seed: Optional[int] = None
    hidden_channels: int = 64
    hidden_irreps: Optional[str] = None
    num_layers: int = 3
    cutoff: float = 5.0
    lmax: int = 2
    product_channels: int = 0
    radial_gain: float = 1.0
    many_body: bool = False
    root: str = "data/QM9"
    data_source: Optional[str] = None
    subset: Optional[str] = None
    out: str = "runs/qm9"
    resume: bool = False
    init_from: Optional[str] = None
    grow: bool = False
    threads: int = 0
    workers: int = 0
    compile: bool = False
    reuse_memory: bool = True
    plot: bool = True


def stationary_penalty(pred: Tensor, pos: Tensor) -> Tensor:
    r"""The mean squared gradient of the predicted energies with respect to
    the positions,

    .. math::
        \frac{1}{3|\mathcal{V}|} \sum_{i \in \mathcal{V}} \left\lVert
        \frac{\partial E_{m(i)}}{\partial \mathbf{p}_i} \right\rVert^2,

    where :math:`m(i)` is the molecule of atom :math:`i`: zero where every
    molecule's predicted energy is stationary, as its true electronic energy
    is at an optimised geometry. The graph is kept (:obj:`create_graph`), so
    the penalty trains the model (double backward).

    Args:
        pred (torch.Tensor): Predicted energies :math:`(|\mathcal{G}|)`, one
            per molecule, computed from :obj:`pos`.
        pos (torch.Tensor): Positions :math:`(|\mathcal{V}|, 3)` with
            :obj:`requires_grad=True`.
    """
    if not pos.requires_grad:
        raise ValueError("stationary_penalty needs the positions the energies were computed "
                         "from, with requires_grad=True")
    # Each energy depends on its own molecule's atoms only, so the gradient
    # of their sum holds every atom's own molecular gradient.
    grad, = torch.autograd.grad(pred.sum(), pos, create_graph=True)
    return grad.pow(2).mean()


def split_indices(num: int, train: int, val: int, test: int, seed: int) -> Dict[str, Tensor]:
    """Random disjoint splits. The test set is drawn first, so runs with the
    same seed and test size share it whatever their training size, and a
    smaller training set is a subset of a larger one."""
    if train + val + test > num:
        raise ValueError(f"train+val+test = {train + val + test} exceeds the {num} molecules")
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    return {"test": perm[:test], "val": perm[test:test + val],
            "train": perm[test + val:test + val + train]}


def element_counts(z: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    counts = torch.zeros(num_graphs, len(ELEMENTS), dtype=torch.float64)
    for k, element in enumerate(ELEMENTS):
        counts[:, k] = torch.bincount(batch[z == element], minlength=num_graphs).double()
    return counts


class LinearBaseline:
    """Least-squares fit of the target on element counts (plus an intercept
    for intensive targets): the per-element linear model a learned model must beat."""

    def __init__(self, extensive: bool):
        self.extensive = extensive
        self.coef: Optional[Tensor] = None

    def _design(self, counts: Tensor) -> Tensor:
        if self.extensive:
            return counts
        return torch.cat([counts, torch.ones(counts.size(0), 1, dtype=counts.dtype)], dim=1)

    def fit(self, counts: Tensor, y: Tensor) -> "LinearBaseline":
        self.coef = torch.linalg.lstsq(self._design(counts), y.double().view(-1, 1),
                                       driver="gelsd").solution.view(-1)
        return self

    def predict(self, counts: Tensor) -> Tensor:
        return self._design(counts) @ self.coef

    def atomref(self) -> Tensor:
        """Per-element coefficients indexed by atomic number, shape [101]."""
        out = torch.zeros(101, dtype=torch.float64)
        out[list(ELEMENTS)] = self.coef[:len(ELEMENTS)]
        return out


def molecule_arrays(dataset, indices: Tensor, target: int):
    data = dataset._data
    slices = dataset.slices
    ptr = slices["z"]
    counts = ptr[indices + 1] - ptr[indices]
    z = torch.cat([data.z[ptr[i]:ptr[i + 1]] for i in indices.tolist()])
    batch = torch.repeat_interleave(torch.arange(indices.numel()), counts)
    y = data.y[indices, target]
    return z, batch, y


def build_model(cfg: Config, extensive: bool, mean: float, std: float,
                atomref: Optional[Tensor]) -> torch.nn.Module:
    if cfg.model == "acn":
        return AtomCloudNet(hidden_channels=cfg.hidden_channels, hidden_irreps=cfg.hidden_irreps,
                            num_layers=cfg.num_layers, cutoff=cfg.cutoff, lmax=cfg.lmax,
                            product_channels=cfg.product_channels, radial_gain=cfg.radial_gain,
                            many_body=cfg.many_body, pooling="add" if extensive else "mean",
                            mean=mean, std=std, atomref=atomref)
    from acn_pyg.baselines import build_baseline
    return build_baseline(cfg.model, extensive, mean=mean, std=std,
                          atomref=None if atomref is None else atomref.float())


def load_weights(path: str, device=None) -> Dict[str, Tensor]:
    """The model weights in a checkpoint of :func:`run`, for a warm start
    (:obj:`Config.init_from`): a ``best.pt`` is the state dict of the
    evaluated model (the weight average when there is one); of a ``last.pt``
    the weight average is taken if it has one, else the trained weights.
    The tensors are put on :obj:`device` (default: the CPU), whatever device
    the run saved them from: a GPU run's checkpoint loads on a CPU machine."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--init-from: no checkpoint at {path!r}")
    ckpt = torch.load(path, map_location="cpu" if device is None else device, weights_only=True)
    if isinstance(ckpt, dict) and "model" in ckpt and "optimizer" in ckpt:  # a last.pt
        averaged = averaged_module_state(ckpt.get("ema") or {})
        return averaged if averaged else ckpt["model"]
    if not isinstance(ckpt, dict) or not all(isinstance(v, Tensor) for v in ckpt.values()):
        raise ValueError(f"--init-from: {path!r} is neither a best.pt (a state dict) nor a "
                         "last.pt of acn_pyg.training.run")
    return ckpt


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


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
def predict(model, loader, target: int, device) -> (Tensor, Tensor):
    model.eval()
    preds, trues = [], []
    for batch in loader:  # kept on the device: one transfer at the end, no sync per batch
        batch = batch.to(device, non_blocking=True)
        preds.append(model(batch.z, batch.pos, batch.batch).view(-1).double())
        trues.append(batch.y[:, target].double())
    model.train()
    return torch.cat(preds).cpu(), torch.cat(trues).cpu()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; else what
    :func:`platform.processor` says): runs on the same kind of machine can
    still land on different CPUs, and their speeds differ."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> Dict[str, object]:
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu": cpu_model(),
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


@dataclass
class Prepared:
    """The data side of a run: the split, the per-element linear baseline
    fitted on its training molecules and the scale the model is built with."""
    dataset: object
    split: Dict[str, Tensor]
    t_index: int
    name: str
    unit: str
    extensive: bool
    baseline: LinearBaseline
    mean: float
    std: float
    atomref: Optional[Tensor]


def prepare(cfg: Config) -> Prepared:
    """Loads the data of :obj:`cfg`, draws its split and fits the linear
    baseline; deterministic, so a finished run's model can be rebuilt."""
    t_index = target_index(cfg.target)
    name, unit = TARGETS[t_index], UNITS[t_index]
    extensive = name in EXTENSIVE_TARGETS
    # A subset file (save_qm9_subset, where qm9pack is not installed) holds the
    # molecules of splits drawn over the whole data set, as without it.
    dataset = (QM9Subset(cfg.subset) if cfg.subset
               else QM9(cfg.root, source_dir=cfg.data_source))
    split = split_indices(dataset.num_total if cfg.subset else len(dataset), cfg.train_size,
                          cfg.val_size, cfg.test_size, cfg.seed)
    if cfg.subset:
        split = {key: dataset.local(idx) for key, idx in split.items()}

    # Per-element linear baseline on the training set; its coefficients are the
    # model's atom reference (extensive) and its residual scale the model's std.
    z, batch, y_train = molecule_arrays(dataset, split["train"], t_index)
    counts = element_counts(z, batch, split["train"].numel())
    baseline = LinearBaseline(extensive).fit(counts, y_train)
    residual = y_train.double() - baseline.predict(counts)
    if extensive:
        mean, std, atomref = 0.0, float(residual.std()) if len(residual) > 1 else 1.0, \
            baseline.atomref()
    else:
        mean, std, atomref = float(y_train.mean()), float(y_train.std()), None
    std = std if std > 0 else 1.0
    return Prepared(dataset, split, t_index, name, unit, extensive, baseline, mean, std, atomref)


def run(cfg: Config) -> Dict[str, object]:
    """Trains one model on one target; returns (and writes) its metrics."""
    from torch_geometric.loader import DataLoader

    if cfg.model not in MODELS:
        raise ValueError(f"--model must be one of {MODELS} (got {cfg.model!r})")
    if not 0.0 <= cfg.warmup < 1.0:
        raise ValueError(f"--warmup is a fraction of the schedule in [0, 1) (got {cfg.warmup})")
    if cfg.workers < 0:
        raise ValueError(f"--workers is a number of processes, >= 0 (got {cfg.workers})")
    if cfg.stationary_weight < 0:
        raise ValueError(f"--stationary-weight must be >= 0 (got {cfg.stationary_weight})")
    if cfg.stationary_weight > 0:
        name = TARGETS[target_index(cfg.target)]
        if name not in STATIONARY_TARGETS:
            raise ValueError(
                f"--stationary-weight applies to the energies {sorted(STATIONARY_TARGETS)}, "
                f"which are stationary at QM9's optimised geometries; not to {name!r}")
        if cfg.compile:
            raise ValueError("--stationary-weight needs a double backward, which "
                             "torch.compile does not support: leave out --compile")
    if cfg.denoise_weight < 0:
        raise ValueError(f"--denoise-weight must be >= 0 (got {cfg.denoise_weight})")
    if cfg.denoise_weight > 0:
        if not cfg.denoise_sigma > 0:
            raise ValueError(f"--denoise-sigma is the noise's standard deviation in Angstrom, "
                             f"> 0 (got {cfg.denoise_sigma})")
        if cfg.model != "acn":
            raise ValueError(f"--denoise-weight reads AtomCloudNet's atom features; "
                             f"not available for --model {cfg.model}")
        if cfg.compile:
            raise ValueError("--denoise-weight reads the atom features through a forward hook, "
                             "which the compiled step does not run: leave out --compile")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if device.type == "cpu" and cfg.reuse_memory:
        # Large per-step tensors are then not page-faulted afresh each step:
        # 1.13x train-step throughput at 128 molecules, 1.22x for the
        # equivariant model at 32 (one thread, separate processes).
        reuse_freed_memory()
    os.makedirs(cfg.out, exist_ok=True)
    # The split follows cfg.seed; initialisation and shuffling follow
    # cfg.init_seed (default: the same), so seeds can vary on one test set.
    torch.manual_seed(cfg.seed if cfg.init_seed is None else cfg.init_seed)
    prep = prepare(cfg)
    dataset, split, t_index, baseline = prep.dataset, prep.split, prep.t_index, prep.baseline
    name, unit, extensive = prep.name, prep.unit, prep.extensive
    mean, std, atomref = prep.mean, prep.std, prep.atomref

    model = build_model(cfg, extensive, mean, std, atomref).to(device)
    # The denoising head (--denoise-weight) is built after the model, so the
    # model starts from the same weights with and without it; it trains with
    # the model and is saved in last.pt only (best.pt holds the model alone).
    head = (DenoisingHead(model.hidden_channels, cutoff=cfg.cutoff).to(device)
            if cfg.denoise_weight > 0 else None)
    params = list(model.parameters()) + (list(head.parameters()) if head is not None else [])
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.model]
    # On a GPU the optimizer runs as one fused kernel (same update).
    fused = True if device.type == "cuda" else None
    optimizer = (torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, fused=fused)
                 if cfg.weight_decay > 0 else torch.optim.Adam(params, lr=lr, fused=fused))
    # Validation, checkpoints and the test use an exponential moving average
    # of the weights (decay cfg.ema per step), which is smoother than the last step.
    ema = ExponentialMovingAverage(model, cfg.ema) if cfg.ema > 0 else None
    evaluated = ema.module if ema is not None else model
    # The atom features the denoising head reads: AtomCloudNet's atom MLP's
    # output, caught by a hook (registered after the EMA's copy, so only the
    # trained model carries it).
    atom_features: Dict[str, Tensor] = {}
    if head is not None:
        model.atom_mlp.register_forward_hook(
            lambda module, inputs, output: atom_features.__setitem__("a", output))
        # The head reuses the model's radius graph of the displaced positions
        # (same cutoff): no second graph, no second round of input checks.
        if isinstance(model.interaction_graph, torch.nn.Module):
            model.interaction_graph.register_forward_hook(
                lambda module, inputs, output: atom_features.__setitem__("edge_index", output))
    # The training step can run through torch.compile (dynamic shapes: one
    # compilation serves every batch); it shares the parameters of `model`,
    # which the EMA, checkpoints and evaluation use eagerly.
    train_model = torch.compile(model, dynamic=True) if cfg.compile else model
    # Workers collate the batches in other processes while this one steps; on
    # a GPU, whose steps are bound by the host, that takes the collation off
    # the critical path. The shuffling has its own generator (seeded from the
    # run's seed, saved in checkpoints) and the loaders' worker seeds another,
    # so the batches are the same with or without workers.
    shuffle_rng = torch.Generator().manual_seed(int(torch.randint(2 ** 62, ())))
    loaders = {key: DataLoader(dataset[idx], batch_size=cfg.batch_size,
                               sampler=(torch.utils.data.RandomSampler(idx, generator=shuffle_rng)
                                        if key == "train" else None),
                               generator=torch.Generator().manual_seed(cfg.seed),
                               pin_memory=device.type == "cuda", num_workers=cfg.workers,
                               persistent_workers=cfg.workers > 0)
               for key, idx in split.items()}

    last_path, best_path = os.path.join(cfg.out, "last.pt"), os.path.join(cfg.out, "best.pt")
    # "epoch" counts the epochs begun (the last may be cut short by the time
    # budget), "steps" the optimizer steps taken.
    state = {"epoch": 0, "steps": 0, "elapsed": 0.0, "best_val": math.inf, "history": []}
    resuming = cfg.resume and os.path.exists(last_path)
    if cfg.init_from is not None and not resuming:
        # A warm start: the weights of an earlier run, then a fresh optimizer
        # and schedule (a resumed run already holds them in its last.pt).
        weights = load_weights(cfg.init_from, device)
        if cfg.grow:
            if not isinstance(model, AtomCloudNet):
                raise ValueError(f"--grow deepens an AtomCloudNet, not {cfg.model!r}")
            have = state_num_layers(weights)
            weights = grown_state_dict(model, weights)
            print(f"grown from {have} to {model.num_layers} layers: the new ones start as "
                  "the identity")
        try:
            model.load_state_dict(weights)
        except RuntimeError as e:
            raise ValueError(f"--init-from {cfg.init_from!r} holds weights of another model "
                             f"(its flags must match this run's): {e}") from None
        if ema is not None:
            ema.module.load_state_dict(weights)
        print(f"initialised from {cfg.init_from}")
    if resuming:
        ckpt = torch.load(last_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        if head is not None:
            if "denoise_head" not in ckpt:
                raise ValueError(f"{last_path} was saved without --denoise-weight; resume it "
                                 f"without, or start a new run")
            head.load_state_dict(ckpt["denoise_head"])
        elif "denoise_head" in ckpt:
            raise ValueError(f"{last_path} was saved with --denoise-weight "
                             f"{ckpt['denoise_weight']:g}; resume it with the same")
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:  # the device's choice, not the saved one
            group["fused"], group["foreach"] = fused, None
        state = {k: ckpt[k] for k in state if k != "steps"}
        # Checkpoints before version 0.2.8 hold no step count: full epochs assumed.
        state["steps"] = int(ckpt.get("steps", state["epoch"] * len(loaders["train"])))
        state["history"] = json.loads(state["history"])
        torch.set_rng_state(ckpt["rng"].cpu())  # map_location moved it
        if "shuffle_rng" in ckpt:  # absent from checkpoints before version 0.2.2
            shuffle_rng.set_state(ckpt["shuffle_rng"].cpu())
        print(f"resumed from {last_path} at epoch {state['epoch']} "
              f"({state['elapsed'] / 60:.1f} min trained)")

    def validate(train_loss: float, extra: Optional[Dict[str, float]] = None) -> None:
        pred, true = predict(evaluated, loaders["val"], t_index, device)
        val_mae = float((pred - true).abs().mean())
        entry = {"epoch": state["epoch"], "train_loss": train_loss, "val_mae": val_mae,
                 "time_s": round(time.perf_counter() - start, 1)}
        entry.update(extra or {})
        state["history"].append(entry)
        if val_mae < state["best_val"]:
            state["best_val"] = val_mae
            torch.save(evaluated.state_dict(), best_path)

    # Validate about as often as it costs no more than the training it follows.
    eval_every = max(1, math.ceil(split["val"].numel() / max(split["train"].numel(), 1)))
    budget = cfg.time_budget * 60.0
    # The penalty on the gradient of the energies (--stationary-weight).
    stationary = cfg.stationary_weight > 0
    start = time.perf_counter() - state["elapsed"]
    total_steps = cfg.epochs * len(loaders["train"])
    bar = tqdm(total=cfg.epochs, initial=state["epoch"], desc=f"{cfg.model} {name}", unit="ep")
    out_of_time = state["elapsed"] >= budget
    while state["epoch"] < cfg.epochs and not out_of_time:
        # The running loss stays on the device (no host sync per step).
        running, seen = torch.zeros((), device=device), 0
        running_penalty = torch.zeros((), device=device)
        running_denoise = torch.zeros((), device=device)
        for step, data in enumerate(loaders["train"]):
            elapsed = time.perf_counter() - start
            progress = max((state["epoch"] * len(loaders["train"]) + step) / total_steps,
                           elapsed / budget)
            if progress >= 1.0:
                out_of_time = True
                break
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_factor(progress, cfg.warmup)
            data = data.to(device, non_blocking=True)
            optimizer.zero_grad()
            pos = data.pos.requires_grad_() if stationary else data.pos
            pred = train_model(data.z, pos, data.batch).view(-1)
            loss = (pred - data.y[:, t_index]).abs().mean() / std
            total = loss
            if stationary:
                # In (standard deviations per Angstrom)^2, like the loss in
                # standard deviations.
                penalty = stationary_penalty(pred, pos) / std ** 2
                running_penalty += penalty.detach() * data.num_graphs
                total = total + cfg.stationary_weight * penalty
            if head is not None:
                # A second pass on displaced positions: the energy is trained
                # on the true geometries only; from the displaced ones the
                # head predicts the (unit) displacement from the atom features.
                noise = centered_noise(data.pos, data.batch, num_graphs=data.num_graphs)
                noisy = data.pos + cfg.denoise_sigma * noise
                train_model(data.z, noisy, data.batch)
                moved = head(atom_features.pop("a"), noisy, data.batch,
                             atom_features.pop("edge_index", None))
                denoise = denoising_loss(moved, noise)
                running_denoise += denoise.detach() * data.num_graphs
                total = total + cfg.denoise_weight * denoise
            total.backward()
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            state["steps"] += 1
            running += loss.detach() * data.num_graphs
            seen += data.num_graphs
        if seen == 0:
            break
        running = float(running)
        state["epoch"] += 1
        if state["epoch"] % eval_every == 0 or out_of_time or state["epoch"] >= cfg.epochs:
            extra = {}
            if stationary:
                extra["train_stationary_penalty"] = float(running_penalty) / seen
            if head is not None:
                extra["train_denoise_loss"] = float(running_denoise) / seen
            validate(running / seen, extra)
        state["elapsed"] = time.perf_counter() - start
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "ema": ema.state_dict() if ema is not None else {},
                    "epoch": state["epoch"], "steps": state["steps"], "elapsed": state["elapsed"],
                    "best_val": state["best_val"], "history": json.dumps(state["history"]),
                    "rng": torch.get_rng_state(), "shuffle_rng": shuffle_rng.get_state(),
                    **({"denoise_head": head.state_dict(), "denoise_weight": cfg.denoise_weight}
                       if head is not None else {})},
                   last_path)
        bar.update(1)
        bar.set_postfix(loss=f"{running / seen:.4f}",
                        val_mae=f"{state['history'][-1]['val_mae']:.4g} {unit}"
                        if state["history"] else "-")
    if state["epoch"] > 0 and (not state["history"]
                               or state["history"][-1]["epoch"] < state["epoch"]):
        validate(float("nan"))
    bar.close()
    wall = time.perf_counter() - start

    if os.path.exists(best_path):
        evaluated.load_state_dict(torch.load(best_path, map_location=device, weights_only=True))
    pred, true = predict(evaluated, loaders["test"], t_index, device)
    test_mae = float((pred - true).abs().mean())
    # The same model on its own training molecules (in order; the shuffling
    # generator is left alone): next to the validation error, it says whether
    # the model underfits (both high) or overfits (a large gap).
    fit_pred, fit_true = predict(evaluated, DataLoader(dataset[split["train"]],
                                                       batch_size=cfg.batch_size), t_index, device)
    train_mae = float((fit_pred - fit_true).abs().mean())
    z, batch, y_test = molecule_arrays(dataset, split["test"], t_index)
    base_pred = baseline.predict(element_counts(z, batch, split["test"].numel()))
    baseline_mae = float((base_pred - y_test.double()).abs().mean())

    metrics = {
        "target": name, "unit": unit, "model": cfg.model,
        "test_mae": test_mae, "baseline_test_mae": baseline_mae, "train_mae": train_mae,
        "best_val_mae": state["best_val"], "epochs": state["epoch"], "steps": state["steps"],
        "epochs_trained": state["steps"] / max(len(loaders["train"]), 1), "wall_time_s": wall,
        "sizes": {k: int(v.numel()) for k, v in split.items()},
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device), "machine": machine(), "config": asdict(cfg),
        "history": state["history"],
    }
    if name in ENERGY_TARGETS:
        metrics["test_mae_kcal_mol"] = test_mae * EV_TO_KCALMOL
        metrics["test_mae_meV"] = test_mae * EV_TO_MEV
        metrics["baseline_test_mae_kcal_mol"] = baseline_mae * EV_TO_KCALMOL
        metrics["train_mae_kcal_mol"] = train_mae * EV_TO_KCALMOL
    with open(os.path.join(cfg.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    if cfg.plot:
        parity_plot(pred, true, f"{cfg.model} on QM9 {name}: test MAE {test_mae:.4g} {unit}",
                    unit, os.path.join(cfg.out, "parity.png"))
    return metrics


def load_run(run_dir: str) -> Dict[str, object]:
    """The ``metrics.json`` of a finished run (its results and config)."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: {run_dir!r} is not a finished run")
    with open(path) as f:
        return json.load(f)


def relocated(cfg: Config, root: Optional[str] = None, subset: Optional[str] = None) -> Config:
    """:obj:`cfg` with its data looked for elsewhere (a finished run read on
    another machine): the QM9 folder :obj:`root` (default: the run's own)
    and the subset file :obj:`subset`, or, when neither is given, :obj:`cfg`
    unchanged."""
    if root is None and subset is None:
        return cfg
    return Config(**{**asdict(cfg), "root": root or cfg.root, "subset": subset})


def run_config(metrics: Dict[str, object]) -> Config:
    """The :class:`Config` a run was trained with, from its metrics."""
    known = set(Config.__dataclass_fields__)
    return Config(**{k: v for k, v in metrics["config"].items() if k in known})


#: Relative tolerance within which a finished run's checkpoint, evaluated
#: again, must give the test MAE the run reported (:func:`reproduces`). The
#: kept checkpoints, saved on GPUs and CPUs and evaluated on a CPU with other
#: batch sizes, differ by at most 2.3e-6; a checkpoint that no longer fits
#: the code differs by orders of magnitude more.
REPRODUCE_RTOL = 1e-4


def reproduces(mae: float, reported: float) -> bool:
    """Whether a test MAE computed again from a run's checkpoint is the one
    the run reported, within :data:`REPRODUCE_RTOL`."""
    return math.isclose(mae, reported, rel_tol=REPRODUCE_RTOL, abs_tol=1e-9)


def load_best_model(run_dir: str, cfg: Config, prep: Prepared, device) -> torch.nn.Module:
    """The model of a finished run (:obj:`cfg`, from :func:`run_config`, on
    the data :obj:`prep` of :func:`prepare`) with the weights of its
    ``best.pt``, on :obj:`device`."""
    best = os.path.join(run_dir, "best.pt")
    if not os.path.exists(best):
        raise FileNotFoundError(f"{best} not found: the run saved no checkpoint")
    model = build_model(cfg, prep.extensive, prep.mean, prep.std, prep.atomref).to(device)
    model.load_state_dict(torch.load(best, map_location=device, weights_only=True))
    return model


def parity_plot(pred: Tensor, true: Tensor, title: str, unit: str, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(true.numpy(), pred.numpy(), s=4, alpha=0.5)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel(f"reference ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def epochs_trained(metrics: Dict[str, object]) -> float:
    """How many epochs a finished run trained: optimizer steps over steps per
    epoch (``epochs_trained``), a fraction when the time budget cut the last
    short; ``epochs`` (the epochs begun) for metrics before version 0.2.8."""
    trained = metrics.get("epochs_trained")
    return float(metrics["epochs"] if trained is None else trained)


def epochs_cell(metrics: Dict[str, object]) -> str:
    """:func:`epochs_trained` for a table: ``"134"``, ``"9.61"``."""
    return f"{round(epochs_trained(metrics), 2):g}"


def epochs_text(metrics: Dict[str, object]) -> str:
    """How long a finished run trained, in epochs: ``"17 epochs"``, or
    ``"16.31 epochs (the last cut short by the time budget)"`` when the
    budget ran out during an epoch (``epochs_trained``: optimizer steps over
    steps per epoch; ``epochs`` counts the epochs begun)."""
    trained = metrics.get("epochs_trained")  # absent from metrics before version 0.2.8
    if trained is not None and trained < metrics["epochs"] - 1e-9:
        return f"{trained:.2f} epochs (the last cut short by the time budget)"
    return f"{metrics['epochs']} epochs"


def summary(metrics: Dict[str, object]) -> List[str]:
    unit = metrics["unit"]
    lines = [f"test MAE ({metrics['model']}, {metrics['target']}): "
             f"{metrics['test_mae']:.5g} {unit}"]
    if "test_mae_kcal_mol" in metrics:
        lines.append(f"          = {metrics['test_mae_kcal_mol']:.4g} kcal/mol "
                     f"= {metrics['test_mae_meV']:.4g} meV")
    if "train_mae" in metrics:  # absent from metrics before version 0.2.4
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
