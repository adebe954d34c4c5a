r"""Predictions of trained models on structures read by ASE: batched, with
forces where the model is an energy, and the mean and spread of an
ensemble of checkpoints.

For an ensemble of :math:`M` models the prediction is the mean
:math:`\bar{y} = \frac{1}{M} \sum_m y_m` and its uncertainty the standard
deviation across members
:math:`\sigma = \sqrt{\frac{1}{M} \sum_m (y_m - \bar{y})^2}`, per structure
and, for forces, per component."""
import contextlib
import csv
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from acn_pyg.inference.checkpoint import TrainedModel

#: Output formats by file extension.
OUTPUT_FORMATS = {".csv": "csv", ".json": "json", ".xyz": "extxyz", ".extxyz": "extxyz"}


def read_structures(paths: Sequence[str], index: str = ":",
                    format: Optional[str] = None) -> List[Tuple[str, int, object]]:
    """Every structure of the files :obj:`paths` that :func:`ase.io.read`
    reads (xyz, extended XYZ, sdf, pdb, ASE databases, ...), as
    :obj:`(file, frame, atoms)`; a file that cannot be read is an error
    naming it."""
    import ase.io

    out = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no structure file at {path!r}")
        try:
            frames = ase.io.read(path, index=index, format=format)
        except Exception as e:  # ASE raises many kinds for unreadable input
            raise ValueError(f"{path}: ASE cannot read it as structures "
                             f"({type(e).__name__}: {e})") from None
        frames = frames if isinstance(frames, list) else [frames]
        if not frames:
            raise ValueError(f"{path}: no structures (index {index!r})")
        out.extend((path, k, atoms) for k, atoms in enumerate(frames))
    return out


def check_ensemble(models: Sequence[TrainedModel]) -> None:
    """Refuses an empty ensemble, and members that predict different
    targets or units."""
    if not models:
        raise ValueError("no checkpoint given")
    first = models[0]
    for m in models[1:]:
        if (m.target, m.unit) != (first.target, first.unit):
            raise ValueError(f"the checkpoints predict different things: {first.path} "
                             f"'{first.target}' in {first.unit}, {m.path} '{m.target}' in "
                             f"{m.unit}; an ensemble needs one target")


def predict_structures(models: Sequence[TrainedModel],
                       structures: Sequence[Tuple[str, int, object]], forces: bool = False,
                       batch_size: int = 64, device=None,
                       progress: bool = False) -> Dict[str, object]:
    """Predicts every structure with every model.

    Args:
        models (list of TrainedModel): One, or the members of an ensemble
            (same target and unit).
        structures (list): :obj:`(file, frame, atoms)` of
            :func:`read_structures`.
        forces (bool, optional): Also the forces :math:`-\\nabla E` (energy
            models only). (default: :obj:`False`)
        batch_size (int, optional): Structures per batch. (default: :obj:`64`)
        device (optional): Where to compute. (default: the models' device)
        progress (bool, optional): Show a progress bar. (default: :obj:`False`)

    Returns:
        A dict: :obj:`y` and :obj:`y_std` (float64): :obj:`[S]` for a
        scalar model; for the heads of :class:`~acn_pyg.AtomCloudNet`, one
        tensor a structure: charges :obj:`[n_s]`, a dipole :obj:`[3]`, a
        tensor :obj:`[3, 3]`. With :obj:`forces`, :obj:`forces` and
        :obj:`forces_std` (one :obj:`[n_s, 3]` tensor a structure).
        :obj:`members` holds every member's :obj:`y` on a last dimension.
    """
    from torch_geometric.loader import DataLoader

    from acn_pyg.datasets.atoms import frame_to_data
    from acn_pyg.train.tasks import energy_and_forces

    check_ensemble(models)
    output = output_of(models[0])
    if forces and not models[0].energy:
        raise ValueError(f"--forces: {models[0].path} predicts '{models[0].target}', not an "
                         "energy; forces are the gradient of an energy")
    data = []
    for k, (path, frame, atoms) in enumerate(structures):
        d = frame_to_data(atoms, {}, frame, path)
        where = f"{path}, frame {frame} ({atoms.get_chemical_formula()})"
        for m in models:
            m.check_elements(d.z.tolist(), where)
        d.idx = torch.tensor([k])
        d.total_charge = torch.tensor([float(atoms.info.get("charge", 0.0))])
        data.append(d)
    device = device if device is not None else next(models[0].model.parameters()).device
    loader = DataLoader(data, batch_size=batch_size)
    ys, fs, counts = [], [], []
    bar = _bar(len(data), progress)
    for batch in loader:
        batch = batch.to(device)
        y_m, f_m = [], []
        for m in models:
            dtype = next(m.model.parameters()).dtype
            batch.pos = batch.pos.to(dtype)
            if output == "scalar":
                with torch.set_grad_enabled(forces):
                    y, f = energy_and_forces(m.model, batch, forces)
            else:
                with torch.no_grad():  # charges and dipoles sum to info["charge"]
                    extra = ({"total_charge": batch.total_charge}
                             if output in ("charges", "dipole") else {})
                    y = m.model(batch.z, batch.pos, batch.batch, **extra)
                y = y.view(-1) if output == "charges" else y
            y_m.append(y.detach().double().cpu())
            if forces:
                f_m.append(f.detach().double().cpu())
        ys.append(torch.stack(y_m, dim=-1))
        if forces:
            fs.append(torch.stack(f_m, dim=-1))
        counts.append(torch.bincount(batch.batch, minlength=batch.num_graphs).cpu())
        if bar is not None:
            bar.update(batch.num_graphs)
    if bar is not None:
        bar.close()
    members = torch.cat(ys)
    mean, std = members.mean(-1), members.std(-1, unbiased=False)
    sizes = torch.cat(counts).tolist()
    if output == "charges":
        mean, std = list(mean.split(sizes)), list(std.split(sizes))
    elif output != "scalar":
        mean, std = list(mean), list(std)
    out: Dict[str, object] = {"members": members, "y": mean, "y_std": std}
    if forces:
        per_atom = torch.cat(fs)
        out["forces"] = list(per_atom.mean(-1).split(sizes))
        out["forces_std"] = list(per_atom.std(-1, unbiased=False).split(sizes))
    return out


def output_of(trained: TrainedModel) -> str:
    """What the model returns: :obj:`"scalar"` (one number a structure),
    or an :class:`~acn_pyg.AtomCloudNet` head's :obj:`"charges"`,
    :obj:`"dipole"` or :obj:`"tensor"`."""
    return getattr(trained.model, "output", "scalar")


def _value(y):
    return float(y) if y.dim() == 0 else y.tolist()


def _bar(total: int, show: bool):
    if not show:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc="predict", unit="structure", dynamic_ncols=True)


def records(models: Sequence[TrainedModel], structures, pred: Dict[str, object]) -> List[dict]:
    """One dict a structure: file, frame, formula, atoms, the prediction and
    its ensemble spread, and forces when predicted (lists, JSON-ready)."""
    target = models[0].target
    rows = []
    for k, (path, frame, atoms) in enumerate(structures):
        row = {"file": path, "frame": frame, "formula": atoms.get_chemical_formula(),
               "num_atoms": len(atoms), target: _value(pred["y"][k])}
        if len(models) > 1:
            row[f"{target}_std"] = _value(pred["y_std"][k])
        if "forces" in pred:
            row["forces"] = pred["forces"][k].tolist()
            if len(models) > 1:
                row["forces_std"] = pred["forces_std"][k].tolist()
        rows.append(row)
    return rows


def output_format(path: str) -> str:
    """The format of an output file, from its extension (:data:`OUTPUT_FORMATS`)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise ValueError(f"--out {path!r}: the extension must be one of "
                         f"{', '.join(OUTPUT_FORMATS)} (CSV, JSON or extended XYZ)")
    return OUTPUT_FORMATS[ext]


def check_output(path: Optional[str], model: TrainedModel, forces: bool) -> str:
    """The format of :obj:`path` (:obj:`None`: CSV on standard output),
    refusing what it cannot hold: a CSV holds one number a structure, so
    neither forces nor what a head predicts."""
    fmt = "csv" if path is None else output_format(path)
    if fmt == "csv":
        if output_of(model) != "scalar":
            raise ValueError(f"{model.path} predicts {model.target} ({output_of(model)} output),"
                             " not one number a structure: give --out FILE.json or FILE.xyz")
        if forces:
            raise ValueError("--forces: a CSV holds one row a structure; give --out FILE.json "
                             "or FILE.xyz")
    return fmt


def write_predictions(path: Optional[str], models: Sequence[TrainedModel], structures,
                      pred: Dict[str, object]) -> None:
    """Writes the predictions to :obj:`path` (:obj:`None`: standard output):
    CSV (one row a structure, no forces), JSON (units, checkpoints and one
    record a structure) or extended XYZ (the structures, with the prediction
    in :obj:`atoms.info` and, for energies, as the calculator's energy and
    forces); :func:`check_output` says what each can hold."""
    first = models[0]
    fmt = check_output(path, first, "forces" in pred)
    rows = records(models, structures, pred)
    if fmt == "csv":
        with (open(path, "w", newline="") if path is not None
              else contextlib.nullcontext(sys.stdout)) as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "json":
        with open(path, "w") as f:
            json.dump({"target": first.target, "unit": first.unit,
                       "forces_unit": first.forces_unit if "forces" in pred else None,
                       "checkpoints": [m.path for m in models], "structures": rows}, f)
    else:
        _write_extxyz(path, first, structures, pred, len(models) > 1)


def _write_extxyz(path: str, first: TrainedModel, structures, pred, ensemble: bool) -> None:
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for k, (_, _, atoms) in enumerate(structures):
        atoms = atoms.copy()
        y, y_std = pred["y"][k].numpy(), pred["y_std"][k].numpy()
        results = {}
        per_atom = output_of(first) == "charges"
        where = atoms.arrays if per_atom else atoms.info
        if first.energy:
            results["energy"] = float(y)
        else:
            where[first.target] = y if y.ndim else float(y)
        if ensemble:
            where[f"{first.target}_std"] = y_std if y_std.ndim else float(y_std)
        if "forces" in pred:
            results["forces"] = pred["forces"][k].numpy()
            if ensemble:
                atoms.arrays["forces_std"] = pred["forces_std"][k].numpy()
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    ase.io.write(path, out, format="extxyz")
