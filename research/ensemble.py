r"""Ensembles of finished QM9 runs: the mean prediction of several models
trained on the same molecules, all members or a subset chosen on the
validation molecules only (greedy forward selection, as in Caruana et al.,
*Ensemble Selection from Libraries of Models*, ICML 2004), tested on the
held-out test molecules; with what the members cost to train, their
warm-start ancestors included. And the average of the weights of one
lineage's checkpoints (:func:`average_state_dicts`): one model, not several."""
import math
import os
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from acn_pyg.datasets.qm9 import ENERGY_TARGETS
from acn_pyg.train import (epochs_trained, load_best_model, load_run, pick_device, predict,
                           prepare, run_config)
from acn_pyg.units import EV_TO_KCALMOL
from acn_pyg.utils.memory import reuse_freed_memory
from finished_runs import relocated, reproduces
from prediction_cache import PredictionCache, file_digest

#: Config fields that runs must share to be averaged: the same target, split and data.
ENSEMBLE_SHARED = ("target", "seed", "train_size", "val_size", "test_size")
#: How members are chosen: all of them, or greedily on the validation molecules.
SELECTIONS = ("all", "greedy")


def greedy_selection(preds: Tensor, true: Tensor) -> List[int]:
    r"""Greedy forward selection of ensemble members on held-out molecules:
    start from the member with the lowest MAE, then keep adding the member
    (each at most once) whose addition lowers the MAE of the mean prediction
    :math:`\frac{1}{|S|} \sum_{k \in S} \hat{y}_k` the most, until no addition
    lowers it.

    Args:
        preds (Tensor): member predictions, shape :math:`[K, N]`.
        true (Tensor): reference values, shape :math:`[N]`.

    Returns:
        The chosen members' indices in the order they were added (at least one).
    """
    if preds.dim() != 2 or preds.size(0) < 1 or preds.size(1) != true.numel():
        raise ValueError(f"greedy_selection needs predictions of shape [K >= 1, N] and N "
                         f"reference values, got {tuple(preds.shape)} and {true.numel()}")
    chosen: List[int] = []
    total = torch.zeros_like(true, dtype=preds.dtype)
    best = math.inf
    while len(chosen) < preds.size(0):
        candidates = [k for k in range(preds.size(0)) if k not in chosen]
        maes = [float(((total + preds[k]) / (len(chosen) + 1) - true).abs().mean())
                for k in candidates]
        i = min(range(len(candidates)), key=maes.__getitem__)
        if maes[i] >= best:
            break
        best = maes[i]
        chosen.append(candidates[i])
        total = total + preds[candidates[i]]
    return chosen


def require_same(run_dirs: Sequence[str], configs: Sequence[object], keys: Sequence[str],
                 why: str) -> None:
    """Raises a :obj:`ValueError` naming the first of :obj:`keys` whose value
    differs between the runs' configs (one per run folder), followed by
    :obj:`why`."""
    for key in keys:
        values = {d: getattr(c, key) for d, c in zip(run_dirs, configs)}
        if len(set(map(str, values.values()))) > 1:
            raise ValueError(f"runs differ in {key!r} ({values}); {why}")


def average_state_dicts(states: Sequence[Dict[str, Tensor]],
                        weights: Optional[Sequence[float]] = None) -> Dict[str, Tensor]:
    r"""The weighted average of model state dicts,
    :math:`\bar{\theta} = \sum_k w_k \theta_k` with :math:`\sum_k w_k = 1`
    (default: uniform), entry by entry: one model whose weights lie between
    those of several (a "model soup", Wortsman et al., ICML 2022). It means
    something only for models of one training lineage (a run and its warm
    restarts), which share a basin of the loss; independently started models
    are not comparable weight by weight.

    Args:
        states: state dicts with the same keys and shapes; entries that are not
            floating point (counters, index buffers) must be equal in all.
        weights: one non-negative weight per state dict, summing to 1.

    Returns:
        The averaged state dict (floating entries in their own dtype).
    """
    if len(states) < 1:
        raise ValueError("average_state_dicts needs at least one state dict")
    weights = [1.0 / len(states)] * len(states) if weights is None else list(weights)
    if len(weights) != len(states) or any(w < 0 for w in weights) \
            or not math.isclose(sum(weights), 1.0, rel_tol=1e-9):
        raise ValueError(f"weights must be {len(states)} non-negative numbers summing to 1, "
                         f"got {weights}")
    keys = list(states[0])
    out: Dict[str, Tensor] = {}
    for k, state in enumerate(states[1:], start=1):
        if list(state) != keys:
            raise ValueError(f"state dict {k} has other entries than state dict 0: "
                             f"{sorted(set(state) ^ set(keys))}")
    for key in keys:
        values = [state[key] for state in states]
        if any(v.shape != values[0].shape for v in values):
            raise ValueError(f"entry {key!r} differs in shape: {[tuple(v.shape) for v in values]}")
        if values[0].is_floating_point():
            out[key] = sum(w * v.double() for w, v in zip(weights, values)).to(values[0].dtype)
        elif all(torch.equal(v, values[0]) for v in values):
            out[key] = values[0].clone()
        else:
            raise ValueError(f"entry {key!r} is not floating point and differs between the "
                             "state dicts: it cannot be averaged")
    return out


def lineage(run_dir: str, records: Optional[Sequence[str]] = None) -> List[str]:
    """The run folder :obj:`run_dir` followed by the runs it was warm-started
    from (``init_from``, oldest last), as far as their folders exist here or,
    with :obj:`records`, as far as :func:`find_records` finds a recorded copy
    of a gone one."""
    found = find_records(records) if records else None
    return [c["run"] for c in _chain(run_dir, load_run(run_dir), found)]


#: What two records of one run must agree on to be taken as copies of it.
_SAME_RUN = ("wall_time_s", "epochs", "best_val_mae", "test_mae")


def find_records(folders: Sequence[str]) -> Dict[str, List[str]]:
    """Recorded copies of finished runs: every folder under :obj:`folders`
    that holds a ``metrics.json`` (a kept checkpoint, a run folder copied into
    the results), keyed by the run folder it was written to (its config's
    ``out``, normalised). A warm start whose own folder is gone (``runs/`` of
    an earlier machine) is found here by that path."""
    found: Dict[str, List[str]] = {}
    for folder in folders:
        if not os.path.isdir(folder):
            raise ValueError(f"records folder {folder!r} does not exist")
        for dirpath, _, files in sorted(os.walk(folder)):
            if "metrics.json" in files:
                out = load_run(dirpath)["config"].get("out")
                if out:
                    found.setdefault(os.path.normpath(out), []).append(dirpath)
    return found


def _record_of(parent: str, found: Dict[str, List[str]]) -> Optional[str]:
    """The recorded copy of the gone run folder :obj:`parent`: one with a
    ``best.pt`` if there is one (a kept checkpoint: the same weights as a
    member are then the same run). Copies that disagree on :data:`_SAME_RUN`
    were two runs written to one path: refused, not guessed."""
    copies = found.get(os.path.normpath(parent), [])
    if not copies:
        return None
    recorded = [{k: load_run(c).get(k) for k in _SAME_RUN} for c in copies]
    if any(r != recorded[0] for r in recorded[1:]):
        raise ValueError(
            f"the records {copies} were all written to {parent!r} but are not one run "
            f"(they differ in {', '.join(_SAME_RUN)}): which one a warm start began from "
            f"cannot be told; pass records that hold only one of them")
    with_weights = [c for c in copies if os.path.exists(os.path.join(c, "best.pt"))]
    return (with_weights or copies)[0]


def _chain(run_dir: str, metrics: Dict[str, object],
           found: Optional[Dict[str, List[str]]] = None) -> List[Dict[str, object]]:
    """:func:`_compute` of :obj:`run_dir` (whose ``metrics.json`` is
    :obj:`metrics`) and of each run of its :func:`lineage`, each read once;
    a gone start is taken from :obj:`found` (:func:`find_records`) if there,
    its entry's ``record_of`` naming the folder it stands for."""
    chain, seen = [_compute(run_dir, metrics)], {os.path.realpath(run_dir)}
    while chain[-1]["init_from"]:
        init = chain[-1]["init_from"]
        parent = init if os.path.isdir(init) else os.path.dirname(init)
        record_of = None
        if not os.path.exists(os.path.join(parent, "metrics.json")) and found:
            record = _record_of(parent, found)
            if record is not None:
                parent, record_of = record, parent
        if (not os.path.exists(os.path.join(parent, "metrics.json"))
                or os.path.realpath(parent) in seen):
            break
        chain.append({**_compute(parent, load_run(parent)), "record_of": record_of})
        seen.add(os.path.realpath(parent))
    return chain


def _identity(run_dir: str) -> str:
    """What makes two run folders the same run: their ``best.pt``'s bytes (a
    kept checkpoint is a copy of a run folder), else the folder itself."""
    best = os.path.join(run_dir, "best.pt")
    return file_digest(best) if os.path.exists(best) else os.path.realpath(run_dir)


def _compute(run_dir: str, metrics: Dict[str, object]) -> Dict[str, object]:
    cfg = metrics["config"]
    return {"run": run_dir, "epochs": metrics["epochs"],
            "epochs_trained": epochs_trained(metrics), "wall_time_s": metrics["wall_time_s"],
            "device": metrics["device"], "batch_size": cfg.get("batch_size"),
            "init_seed": cfg.get("init_seed"), "init_from": cfg.get("init_from")}


def ensemble_test(run_dirs: Sequence[str], device: str = "auto", batch_size: int = 128,
                  root: Optional[str] = None, subset: Optional[str] = None,
                  select: str = "all", cache_dir: Optional[str] = None,
                  keep_predictions: bool = False,
                  records: Optional[Sequence[str]] = None) -> Dict[str, object]:
    r"""Test MAE of the mean prediction of several finished runs (each one's
    ``best.pt``), :math:`\hat{y} = \frac{1}{|S|} \sum_{k \in S} \hat{y}_k`,
    and of each member alone, on validation and test molecules.

    The runs must share :data:`ENSEMBLE_SHARED` (so they were trained and
    selected on the same molecules and tested on the same ones); they may
    differ in model, initialisation and hyperparameters. Each member must
    reproduce the test MAE its run reported (else a :obj:`ValueError`: the
    checkpoint does not fit this code or the data).

    Args:
        run_dirs: run folders (``metrics.json`` and ``best.pt``).
        select (str): ``"all"`` (default) averages every member; ``"greedy"``
            averages the members :func:`greedy_selection` picks on the
            validation molecules (the test molecules play no part in it).
            Both are reported either way (``*_all`` and ``selected``).
        root, subset: where the runs' data are, if not where they found them.
        cache_dir (str, optional): a :class:`~prediction_cache.PredictionCache`
            folder: each member's validation and test
            predictions are taken from it when an entry for the same
            checkpoint, molecules and code is there (``cached`` in the result
            says which), else computed and stored (after the check above).
            Default: no cache.
        keep_predictions (bool): also return the members' predictions
            (``predictions``: split name -> :math:`[K, N]`, in the order of
            :obj:`run_dirs`) and the reference values (``true``: split name
            -> :math:`[N]`), in the target's unit, and the data they are of
            (``prepared``: :func:`~acn_pyg.train.prepare`'s result, with
            the split and the molecules). Default: :obj:`False`.

    The result's ``compute`` lists each member's own training; ``ancestors``
    the runs it was warm-started from (:func:`lineage`), counted once each
    in ``total_epochs`` (begun) / ``total_epochs_trained`` (optimizer steps
    over steps per epoch) / ``total_wall_time_s`` (and per device,
    ``total_wall_time_s_by_device``) of the chosen members. Runs that shared
    a device at once each count their own wall time. Starts whose run folder
    is not found (so not counted) are listed in ``ancestors_not_found``;
    with :obj:`records` (folders of recorded runs: kept checkpoints, run
    folders copied into the results), a start whose folder is gone is
    counted from its recorded copy (:func:`find_records`; the ancestor's
    ``record_of`` names the folder it stands for).
    """
    from torch_geometric.loader import DataLoader

    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    if len(run_dirs) < 1:
        raise ValueError("ensemble_test needs at least one run folder")
    run_dirs = list(run_dirs)
    runs = [load_run(d) for d in run_dirs]
    configs = [run_config(m) for m in runs]
    require_same(run_dirs, configs, ENSEMBLE_SHARED,
                 f"an ensemble needs the same {', '.join(ENSEMBLE_SHARED)}")
    prep = prepare(relocated(configs[0], root, subset))
    dev = pick_device(device)
    if dev.type == "cpu":
        reuse_freed_memory()  # as in run(): no page faults for each batch's tensors
    loaders = {s: DataLoader(prep.dataset[prep.split[s]], batch_size=batch_size)
               for s in ("val", "test")}
    # The reference values, read without any model: they also identify the
    # molecules (and target) for the prediction cache.
    true = {s: torch.cat([b.y[:, prep.t_index].double() for b in loader])
            for s, loader in loaders.items()}
    cache = PredictionCache(cache_dir) if cache_dir else None
    preds: Dict[str, List[Tensor]] = {"val": [], "test": []}
    maes: Dict[str, List[float]] = {"val": [], "test": []}
    cached: List[bool] = []
    for run_dir, cfg, metrics in zip(run_dirs, configs, runs):
        best = os.path.join(run_dir, "best.pt")
        pred = cache.load(best, true) if cache is not None and os.path.exists(best) else None
        cached.append(pred is not None)
        if pred is None:
            model = load_best_model(run_dir, cfg, prep, dev)
            pred = {}
            for s, loader in loaders.items():
                pred[s], seen = predict(model, loader, prep.t_index, dev)
                if not torch.equal(seen, true[s]):
                    raise RuntimeError(f"the {s} molecules came in another order")
            del model
        for s in loaders:
            preds[s].append(pred[s])
            maes[s].append(float((pred[s] - true[s]).abs().mean()))
        # The checkpoint must still give what its run measured: a state dict
        # saved by other code can load into the same shapes and mean nothing.
        mae = maes["test"][-1]
        reported = metrics.get("test_mae")
        if reported is not None and not reproduces(mae, reported):
            raise ValueError(
                f"{best} gives test MAE {mae:.6g} {prep.unit}, "
                f"but its run reported {reported:.6g}: the checkpoint does not match this code "
                f"(saved by another acn_pyg version?) or the data differ")
        if cache is not None and not cached[-1]:
            cache.save(best, true, pred)
    stacked = {s: torch.stack(p) for s, p in preds.items()}

    def mean_mae(s: str, members: List[int]) -> float:
        return float((stacked[s][members].mean(dim=0) - true[s]).abs().mean())

    everyone = list(range(len(run_dirs)))
    greedy = greedy_selection(stacked["val"], true["val"])
    chosen = greedy if select == "greedy" else everyone
    compute = []
    found = find_records(records) if records else None
    for run_dir, metrics in zip(run_dirs, runs):
        chain = _chain(run_dir, metrics, found)
        # A start whose run folder is not here (runs/ of an earlier machine)
        # cannot be counted: said, not dropped silently.
        compute.append({**chain[0], "ancestors": chain[1:],
                        "ancestor_not_found": chain[-1]["init_from"]})
    counted = {}  # one entry per trained run, however many chains or copies hold it
    for k in chosen:
        for c in [compute[k]] + compute[k]["ancestors"]:
            counted.setdefault(_identity(c["run"]), c)
    result = {
        "target": prep.name, "unit": prep.unit, "runs": run_dirs, "select": select,
        "selected": [run_dirs[k] for k in chosen], "greedy_order": [run_dirs[k] for k in greedy],
        "val_size": int(true["val"].numel()), "test_size": int(true["test"].numel()),
        "member_val_mae": maes["val"], "member_test_mae": maes["test"],
        "val_mae": mean_mae("val", chosen), "test_mae": mean_mae("test", chosen),
        "val_mae_all": mean_mae("val", everyone), "test_mae_all": mean_mae("test", everyone),
        "device": str(dev), "compute": compute, "cached": cached,
        "total_epochs": sum(c["epochs"] for c in counted.values()),
        "total_epochs_trained": sum(c["epochs_trained"] for c in counted.values()),
        "total_wall_time_s": sum(c["wall_time_s"] for c in counted.values()),
        "ancestors_not_found": sorted({compute[k]["ancestor_not_found"] for k in chosen
                                       if compute[k]["ancestor_not_found"]}),
        "total_wall_time_s_by_device": {
            dev_: sum(c["wall_time_s"] for c in counted.values() if c["device"] == dev_)
            for dev_ in sorted({c["device"] for c in counted.values()})},
    }
    if keep_predictions:
        result["predictions"], result["true"], result["prepared"] = stacked, true, prep
    if prep.name in ENERGY_TARGETS:
        for key in ("member_val_mae", "member_test_mae"):
            result[key + "_kcal_mol"] = [m * EV_TO_KCALMOL for m in result[key]]
        for key in ("val_mae", "test_mae", "val_mae_all", "test_mae_all"):
            result[key + "_kcal_mol"] = result[key] * EV_TO_KCALMOL
    return result
