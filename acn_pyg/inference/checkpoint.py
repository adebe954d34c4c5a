r"""Self-contained checkpoints: one file holds a trained model's class and
constructor arguments, its weights, what it predicts (target, unit, whether
it is an energy), the elements it was trained on, the run's configuration
and the acn_pyg version, all as plain data, so it loads with
:func:`torch.load` and :obj:`weights_only=True` (no code is unpickled).

``acn-pyg train`` writes its ``best.pt`` this way; :func:`load_model` reads
those, and the ``best.pt`` of older versions (a bare state dict) from their
run folder's ``metrics.json``."""
import json
import os
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch

from acn_pyg.utils.io import atomic_save, load_checkpoint

#: The checkpoint format this acn_pyg writes; it reads this one and older.
FORMAT = 1
_KEY = "acn_pyg_checkpoint"
#: QM9 targets that are energies in eV: their forces are minus their gradient.
QM9_ENERGIES = frozenset(("U0", "U", "H", "G", "U0_atom", "U_atom", "H_atom", "G_atom"))
#: The models a checkpoint can hold, by name.
MODEL_NAMES = ("acn", "schnet", "dimenet++", "dimenet")


@dataclass
class TrainedModel:
    """A model loaded from a checkpoint, with what the checkpoint says of it.

    Attributes:
        model (torch.nn.Module): The model, in evaluation mode; called as
            ``model(z, pos, batch)``, it returns :obj:`[num_graphs, 1]`.
        target (str): What it predicts (a QM9 target such as ``"U0"``, or
            ``"energy"``).
        unit (str): The unit of its output (``"eV"``).
        energy (bool): Whether the output is a potential energy, so that
            the forces :math:`-\\nabla E` (in :obj:`unit` per Angstrom) mean
            something.
        elements (tuple of int): The atomic numbers of the training
            structures; others have untrained embeddings.
        config (dict, optional): The training run's
            :class:`~acn_pyg.train.Config` as a dict.
        version (str): The acn_pyg version that saved it.
        path (str): The file it was read from.
    """
    model: torch.nn.Module
    target: str
    unit: str
    energy: bool
    elements: Tuple[int, ...]
    config: Optional[Dict[str, object]]
    version: str
    path: str

    @property
    def forces_unit(self) -> str:
        return f"{self.unit}/A"

    def check_elements(self, z: Sequence[int], where: str) -> None:
        """Raises a :class:`ValueError` naming :obj:`where` and the first
        element of :obj:`z` that the model never saw in training."""
        from ase.data import chemical_symbols
        known = set(self.elements)
        new = sorted(set(int(v) for v in z) - known)
        if new:
            names = ", ".join(f"{chemical_symbols[v]} (Z={v})" for v in new)
            seen = ", ".join(chemical_symbols[v] for v in self.elements)
            raise ValueError(f"{where} holds {names}, which the model {self.path} never saw in "
                             f"training (it knows {seen}): its prediction would be "
                             "meaningless")


def model_spec(model: torch.nn.Module) -> Dict[str, object]:
    """The :obj:`{"name", "kwargs"}` that rebuilds :obj:`model`: an
    :class:`~acn_pyg.AtomCloudNet`'s :meth:`~acn_pyg.AtomCloudNet.config`.
    A PyG baseline cannot tell its arguments: pass its spec to
    :func:`save_model` (``acn-pyg train`` does)."""
    from acn_pyg.models import AtomCloudNet
    if isinstance(model, AtomCloudNet):
        return {"name": "acn", "kwargs": model.config()}
    raise ValueError(f"a {type(model).__name__} does not tell its constructor arguments: "
                     "pass save_model(..., spec={'name': ..., 'kwargs': ...})")


def build(spec: Dict[str, object]) -> torch.nn.Module:
    """The (untrained) model of a :func:`model_spec`: :obj:`"acn"` with
    :class:`~acn_pyg.AtomCloudNet`'s keyword arguments, or a baseline of
    :func:`acn_pyg.train.baselines.build_baseline` with :obj:`extensive`,
    :obj:`mean`, :obj:`std` and :obj:`atomref`."""
    name, kwargs = spec.get("name"), dict(spec.get("kwargs") or {})
    if name == "acn":
        from acn_pyg.models import AtomCloudNet
        return AtomCloudNet(**kwargs)
    if name in MODEL_NAMES:
        from acn_pyg.train.baselines import build_baseline
        return build_baseline(name, **kwargs)
    raise ValueError(f"the checkpoint holds a model named {name!r}, which this acn_pyg does "
                     f"not know (it knows {', '.join(MODEL_NAMES)})")


def save_model(path: str, model: torch.nn.Module, target: str = "y", unit: str = "",
               energy: bool = False, elements: Optional[Sequence[int]] = None,
               config: Optional[Dict[str, object]] = None,
               spec: Optional[Dict[str, object]] = None) -> None:
    """Writes :obj:`model` to :obj:`path` as a self-contained checkpoint
    (through :func:`~acn_pyg.utils.io.atomic_save`).

    Args:
        path (str): The file to write.
        model (torch.nn.Module): The model.
        target (str, optional): What it predicts. (default: :obj:`"y"`)
        unit (str, optional): The unit of its output. (default: :obj:`""`)
        energy (bool, optional): Whether the output is a potential energy.
            (default: :obj:`False`)
        elements (list of int, optional): The atomic numbers it was
            trained on. (default: :obj:`None`, all 1 to 100)
        config (dict, optional): The training configuration.
        spec (dict, optional): :func:`model_spec` (default: the model's own,
            for :class:`~acn_pyg.AtomCloudNet`).
    """
    from acn_pyg import __version__
    spec = model_spec(model) if spec is None else spec
    if spec.get("name") not in MODEL_NAMES:
        raise ValueError(f"spec['name'] must be one of {MODEL_NAMES} (got {spec.get('name')!r})")
    elements = list(range(1, 101)) if elements is None else sorted(int(v) for v in elements)
    atomic_save({_KEY: FORMAT, "acn_pyg_version": __version__, "model": spec,
                 "state_dict": model.state_dict(), "target": str(target), "unit": str(unit),
                 "energy": bool(energy), "elements": elements,
                 "config": None if config is None else json.dumps(config)}, path)


def is_checkpoint(obj) -> bool:
    """Whether a loaded file is a checkpoint of :func:`save_model`."""
    return isinstance(obj, dict) and _KEY in obj


def state_dict_of(obj):
    """The model weights of a loaded ``best.pt``: its :obj:`state_dict`
    (a checkpoint of :func:`save_model`), or the file itself (a bare state
    dict, as acn_pyg < 0.5 wrote)."""
    return obj["state_dict"] if is_checkpoint(obj) else obj


def resolve(path: str) -> str:
    """:obj:`path`, or its ``best.pt`` when it is a run folder."""
    if os.path.isdir(path):
        best = os.path.join(path, "best.pt")
        if not os.path.isfile(best):
            raise FileNotFoundError(f"{path!r} is a folder without a best.pt: not a run folder")
        return best
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    return path


def load_trained(path: str, device=None) -> TrainedModel:
    """The :class:`TrainedModel` of a checkpoint: a file of
    :func:`save_model` (any ``best.pt`` of ``acn-pyg train``), a run folder
    (its ``best.pt``), or the ``best.pt`` of acn_pyg < 0.5 (a bare state
    dict, rebuilt from the ``metrics.json`` beside it and the run's data).
    A truncated file, a checkpoint of a newer format or a newer layout, and
    weights that do not fit the model are errors that name the file."""
    path = resolve(path)
    obj = load_checkpoint(path, "cpu")
    if is_checkpoint(obj):
        trained = _from_checkpoint(path, obj)
    elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        trained = _from_run_folder(path, obj)
    else:
        raise ValueError(f"{path} is not a model checkpoint of acn_pyg (a last.pt? use the "
                         "run's best.pt)")
    trained.model.eval()
    if device is not None:
        trained.model.to(device)
    return trained


def load_model(path: str, device=None) -> torch.nn.Module:
    """The ready model of a checkpoint (:func:`load_trained`), in
    evaluation mode on :obj:`device` (default: the CPU)."""
    return load_trained(path, device).model


def _from_checkpoint(path: str, obj: dict) -> TrainedModel:
    fmt = obj[_KEY]
    if not isinstance(fmt, int) or fmt > FORMAT:
        raise ValueError(f"{path} has checkpoint format {fmt}, newer than this acn_pyg reads "
                         f"({FORMAT}); it was saved by acn_pyg {obj.get('acn_pyg_version')}: "
                         "upgrade acn_pyg to load it")
    model = build(obj["model"])
    _load_state(model, obj["state_dict"], path)
    config = obj.get("config")
    return TrainedModel(model, obj["target"], obj["unit"], bool(obj["energy"]),
                        tuple(obj["elements"]), None if config is None else json.loads(config),
                        str(obj.get("acn_pyg_version")), path)


def _load_state(model: torch.nn.Module, state, path: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: its weights do not fit its model: "
                         f"{str(e).splitlines()[0]}") from None
    except ValueError as e:  # a newer layout (acn_pyg.utils.checks.layout_version)
        raise ValueError(f"{path}: {e}") from None


def _from_run_folder(path: str, state) -> TrainedModel:
    """A bare state dict (``best.pt`` of acn_pyg < 0.5), rebuilt as its run
    did: the config from ``metrics.json`` beside it, the scale and atom
    reference from the run's data."""
    from acn_pyg.train.data import prepare
    from acn_pyg.train.experiment import checkpoint_info
    from acn_pyg.train.report import load_run, run_config

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isfile(os.path.join(folder, "metrics.json")):
        raise ValueError(f"{path} is a bare state dict (a best.pt of acn_pyg < 0.5) without "
                         f"the run's metrics.json beside it, which says how to build its model")
    metrics = load_run(folder)
    cfg = run_config(metrics)
    info = checkpoint_info(cfg, prepare(cfg))
    model = build(info["spec"])
    _load_state(model, state, path)
    return TrainedModel(model, info["target"], info["unit"], info["energy"],
                        tuple(info["elements"]), metrics["config"], "< 0.5", path)
