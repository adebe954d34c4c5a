"""The data side of a run: disjoint random splits, the per-element linear
baseline fitted on the training molecules, and the loaders."""
import math
import os
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from acn_pyg.datasets.qm9 import QM9, TARGETS, UNITS, target_index
from acn_pyg.datasets.qm9_subset import QM9Subset
from acn_pyg.train.config import EXTENSIVE_TARGETS, Config
from acn_pyg.train.tasks import (ChargesTask, DipoleMagnitudeTask, DipoleVectorTask,
                                 EnergyForcesTask, PropertyTask, TensorTask)

#: The element columns of the linear baseline (QM9 has H, C, N, O, F).
ELEMENTS = (1, 6, 7, 8, 9)
#: QM9 properties beyond the 19 scalar targets: the model's output and the unit.
STRUCTURED_TARGETS = {"charges": ("charges", "e"), "polarizability": ("tensor", "a0^3")}
#: Properties of a structure file that a head learns: the model's output
#: (in the file's units).
FILE_TARGETS = {"charges": "charges", "dipole": "dipole", "polarizability": "tensor"}


def split_indices(num: int, train: int, val: int, test: int, seed: int) -> Dict[str, Tensor]:
    """Random disjoint splits. The test set is drawn first, so runs with the
    same seed and test size share it whatever their training size, and a
    smaller training set is a subset of a larger one."""
    for name, size in (("train", train), ("val", val), ("test", test)):
        if not (isinstance(size, int) and size >= 0):
            raise ValueError(f"split size '{name}' must be a whole number >= 0 (got {size!r})")
    if train + val + test > num:
        raise ValueError(f"train+val+test = {train + val + test} exceeds the {num} molecules")
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    return {"test": perm[:test], "val": perm[test:test + val],
            "train": perm[test + val:test + val + train]}


def element_counts(z: Tensor, batch: Tensor, num_graphs: int,
                   elements: Sequence[int] = ELEMENTS) -> Tensor:
    """How many atoms of each of :obj:`elements` (default: QM9's) every
    graph holds, :math:`(|\\mathcal{G}|, |\\mathrm{elements}|)` in float64."""
    counts = torch.zeros(num_graphs, len(elements), dtype=torch.float64)
    for k, element in enumerate(elements):
        counts[:, k] = torch.bincount(batch[z == element], minlength=num_graphs).double()
    return counts


class LinearBaseline:
    r"""Least-squares fit of the target on element counts,
    :math:`y \approx \sum_Z n_Z w_Z \,(+\, b)`, with the intercept :math:`b`
    for intensive targets only: the per-element linear model a learned model
    must beat.

    Args:
        extensive (bool): Whether the target grows with the molecule (no
            intercept).
        elements (list of int, optional): The atomic numbers counted.
            (default: QM9's H, C, N, O, F)
    """

    def __init__(self, extensive: bool, elements: Sequence[int] = ELEMENTS):
        self.extensive = extensive
        self.elements = tuple(elements)
        self.coef: Optional[Tensor] = None

    def _design(self, counts: Tensor) -> Tensor:
        if self.extensive:
            return counts
        return torch.cat([counts, torch.ones(counts.size(0), 1, dtype=counts.dtype)], dim=1)

    def fit(self, counts: Tensor, y: Tensor) -> "LinearBaseline":
        self.coef = torch.linalg.lstsq(self._design(counts), y.double().view(-1, 1),
                                       driver="gelsd").solution.view(-1)
        return self

    def fit_chunks(self, chunks: Iterable[Tuple[Tensor, Tensor]]) -> "LinearBaseline":
        """:meth:`fit` on pairs of counts and targets given in chunks,
        through the normal equations (memory independent of the number of
        structures; the minimum-norm solution when the counts do not
        determine every coefficient, as a single molecule's frames)."""
        gram, moment = None, None
        for counts, y in chunks:
            x = self._design(counts)
            g, m = x.T @ x, x.T @ y.double().view(-1, 1)
            gram, moment = (g, m) if gram is None else (gram + g, moment + m)
        self.coef = torch.linalg.lstsq(gram, moment, driver="gelsd").solution.view(-1)
        return self

    def predict(self, counts: Tensor) -> Tensor:
        return self._design(counts) @ self.coef

    def atomref(self) -> Tensor:
        """Per-element coefficients indexed by atomic number, shape [101]."""
        out = torch.zeros(101, dtype=torch.float64)
        out[list(self.elements)] = self.coef[:len(self.elements)]
        return out


def molecule_arrays(dataset, indices: Tensor,
                    target: Union[int, str]) -> Tuple[Tensor, Tensor, Tensor]:
    """Atomic numbers, batch vector and target of the molecules
    :obj:`indices` of a collated :obj:`dataset` (held in memory or an
    on-disk store), without collating them:
    column :obj:`target` of :obj:`y`, or the per-structure property of that
    name."""
    data = dataset._data
    ptr = dataset.slices["z"]
    counts = ptr[indices + 1] - ptr[indices]
    z = atom_values(dataset, indices, "z")
    batch = torch.repeat_interleave(torch.arange(indices.numel()), counts)
    y = data[target][indices].view(-1) if isinstance(target, str) else data.y[indices, target]
    return z, batch, y


def atom_values(dataset, indices: Tensor, key: str) -> Tensor:
    """The per-atom attribute :obj:`key` of the structures :obj:`indices` of
    a collated :obj:`dataset` (held in memory or an on-disk store),
    concatenated in their order, without collating them."""
    ptr = dataset.slices[key]
    starts = ptr[indices]
    counts = ptr[indices + 1] - starts
    # Row r of structure k is starts[k] + r: one gather, no loop over structures.
    first = torch.cumsum(counts, 0) - counts
    rows = torch.arange(int(counts.sum())) + torch.repeat_interleave(starts - first, counts)
    return dataset._data[key][rows]


@dataclass
class Prepared:
    """The data side of a run: the split, the per-element linear baseline
    fitted on its training molecules, the scale the model is built with and
    the task (:mod:`~acn_pyg.train.tasks`). :obj:`t_index` is the QM9
    column, or :obj:`"energy"` for a structure file; :obj:`baseline` is
    :obj:`None` when no energies are learned; :obj:`elements` are the atomic
    numbers of the training structures; :obj:`output` and :obj:`head_std`
    are the model's (:class:`~acn_pyg.AtomCloudNet`)."""
    dataset: object
    split: Dict[str, Tensor]
    t_index: Union[int, str]
    name: str
    unit: str
    extensive: bool
    baseline: Optional[LinearBaseline]
    mean: float
    std: float
    atomref: Optional[Tensor]
    task: object = None
    elements: Tuple[int, ...] = ()
    output: str = "scalar"
    head_std: Optional[float] = None

    def baseline_prediction(self, key: str) -> Tensor:
        """The linear baseline's prediction for the molecules of split
        :obj:`key`, in their order (float64)."""
        z, batch, _ = molecule_arrays(self.dataset, self.split[key], self.t_index)
        return self.baseline.predict(element_counts(z, batch, self.split[key].numel(),
                                                    self.baseline.elements))


def prepare(cfg: Config) -> Prepared:
    """Loads the data of :obj:`cfg`, draws its split and fits the linear
    baseline; deterministic, so a finished run's model can be rebuilt."""
    if not cfg.on_qm9:
        return _prepare_file(cfg)
    dataset, split = _qm9_split(cfg)
    if cfg.target in STRUCTURED_TARGETS:
        return _prepare_structured(cfg, dataset, split)
    t_index = target_index(cfg.target)
    name, unit = TARGETS[t_index], UNITS[t_index]
    extensive = name in EXTENSIVE_TARGETS

    # The baseline's coefficients are the model's atom reference (extensive
    # targets) and its residual scale the model's std.
    z, batch, y_train = molecule_arrays(dataset, split["train"], t_index)
    counts = element_counts(z, batch, split["train"].numel())
    baseline = LinearBaseline(extensive).fit(counts, y_train)
    residual = y_train.double() - baseline.predict(counts)
    if extensive:
        mean, atomref = 0.0, baseline.atomref()
        std = float(residual.std()) if len(residual) > 1 else 1.0
    else:
        mean, std, atomref = float(y_train.mean()), float(y_train.std()), None
    std = std if std > 0 else 1.0
    elements = tuple(sorted(set(z.tolist())))
    if resolved_output(cfg) == "dipole":  # a vector head, trained on its magnitude
        return Prepared(dataset, split, t_index, name, unit, extensive, baseline, 0.0, std,
                        None, DipoleMagnitudeTask(t_index, std), elements, "dipole")
    return Prepared(dataset, split, t_index, name, unit, extensive, baseline, mean, std, atomref,
                    PropertyTask(t_index, std), elements)


def resolved_output(cfg: Config) -> str:
    """The model's :obj:`output` for :obj:`cfg`: :obj:`cfg.output`, or for
    ``"auto"`` the head of the target (QM9's :obj:`mu` through a dipole
    vector with AtomCloudNet, :obj:`charges` per atom, the
    :obj:`polarizability` tensor) and a scalar otherwise."""
    if cfg.output != "auto":
        return cfg.output
    if cfg.target in (STRUCTURED_TARGETS if cfg.on_qm9 else FILE_TARGETS):
        return FILE_TARGETS[cfg.target]
    if cfg.on_qm9 and cfg.model == "acn" and str(cfg.target) in ("mu", "0"):
        return "dipole"
    return "scalar"


def _qm9_split(cfg: Config):
    # A subset file (save_qm9_subset, where qm9pack is not installed) holds the
    # molecules of splits drawn over the whole data set, as without it.
    dataset = (QM9Subset(cfg.subset) if cfg.subset
               else QM9(cfg.root, source_dir=cfg.data_source))
    split = split_indices(dataset.num_total if cfg.subset else len(dataset), cfg.train_size,
                          cfg.val_size, cfg.test_size, cfg.seed)
    if cfg.subset:
        split = {key: dataset.local(idx) for key, idx in split.items()}
    return dataset, split


def _prepare_structured(cfg: Config, dataset, split: Dict[str, Tensor],
                        unit: Optional[str] = None) -> Prepared:
    """:func:`prepare` for per-atom charges (QM9's, e, or a file's; the
    reference is each element's mean charge over the training atoms), a
    polarizability tensor (QM9's, :math:`a_0^3`, learned on its principal
    values, or a file's, on its components; the isotropic reference is the
    per-element linear fit of its trace over 3, as for :obj:`alpha`) and a
    file's dipole vectors (no reference; the scale is the RMS of their
    components). The scale is the residual's standard deviation; that of a
    tensor's traceless part the spread of its principal values about their
    mean."""
    output = FILE_TARGETS[cfg.target]
    unit = STRUCTURED_TARGETS[cfg.target][1] if unit is None else unit
    z, batch, _ = molecule_arrays(dataset, split["train"], "idx")
    elements = tuple(sorted(set(z.tolist())))
    head_std, baseline, atomref, residual = None, None, None, None
    if cfg.target == "dipole":
        rms = float(dataset._data.dipole[split["train"]].double().pow(2).mean().sqrt())
    elif cfg.target == "charges":
        q = atom_values(dataset, split["train"], "charges").double().view(-1)
        atomref = torch.zeros(101, dtype=torch.float64)
        for element in elements:
            atomref[element] = q[z == element].mean()
        residual = q - atomref[z]
    else:
        tensors = dataset._data.polarizability[split["train"]].double().reshape(-1, 3, 3)
        iso = tensors.diagonal(dim1=1, dim2=2).mean(-1)
        counts = element_counts(z, batch, split["train"].numel(), elements)
        baseline = LinearBaseline(True, elements).fit(counts, iso)
        atomref = baseline.atomref()
        residual = iso - baseline.predict(counts)
        principal = torch.linalg.eigvalsh(tensors)
        head_std = float((principal - principal.mean(-1, keepdim=True)).std())
    if residual is None:
        std = rms
    else:
        std = float(residual.std()) if residual.numel() > 1 else 1.0
    std = std if std > 0 else 1.0
    if head_std is not None and not head_std > 0:
        head_std = std
    task = {"charges": lambda: ChargesTask(std), "dipole": lambda: DipoleVectorTask(std),
            "polarizability": lambda: TensorTask(std, head_std, frame_free=cfg.on_qm9)}
    return Prepared(dataset, split, cfg.target, cfg.target, unit, False, baseline, 0.0, std,
                    atomref, task[cfg.target](), elements, output, head_std)


def _prepare_file(cfg: Config) -> Prepared:
    """:func:`prepare` for a structure file: energies (summed over atoms,
    with per-element reference energies fitted on the training structures)
    and forces, or a property of :data:`FILE_TARGETS` through a head."""
    from acn_pyg.datasets.atoms import AtomsDataset

    keys = {}
    if cfg.target in FILE_TARGETS:
        keys[cfg.target] = cfg.property_key or cfg.target
    else:
        if cfg.energy_weight > 0:
            keys["energy"] = cfg.energy_key
        if cfg.forces_weight > 0:
            keys["forces"] = cfg.forces_key
    path = os.path.abspath(cfg.data)
    dataset = AtomsDataset(os.path.dirname(path), path, properties=keys, on_disk=cfg.on_disk)
    split = split_indices(len(dataset), cfg.train_size, cfg.val_size, cfg.test_size, cfg.seed)
    train = split["train"]
    # Statistics over chunks of structures: memory does not grow with the data.
    elements = tuple(sorted(set().union(*(atom_values(dataset, chunk, "z").unique().tolist()
                                          for chunk in _chunks(train)))))
    _check_elements(dataset, split, elements, cfg.data)
    if cfg.target in FILE_TARGETS:
        return _prepare_structured(cfg, dataset, split, unit="")
    baseline, atomref, std = None, None, 1.0
    if "energy" in keys:
        def pairs():
            for chunk in _chunks(train):
                z, batch, energy = molecule_arrays(dataset, chunk, "energy")
                yield element_counts(z, batch, chunk.numel(), elements), energy
        baseline = LinearBaseline(True, elements)
        if cfg.reference_energies is None:
            baseline.fit_chunks(pairs())
        else:
            baseline.coef = reference_energies(cfg.reference_energies, elements)
        atomref = baseline.atomref()
        n, total, squares = 0, 0.0, 0.0
        for counts, energy in pairs():
            r = energy.double() - baseline.predict(counts)
            n, total, squares = (n + r.numel(), total + float(r.sum()),
                                 squares + float(r.square().sum()))
        std = math.sqrt(max(squares - total ** 2 / n, 0.0) / (n - 1)) if n > 1 else 1.0
    if "forces" in keys:  # forces set the scale when learned, as in MACE
        squares, count = 0.0, 0
        for chunk in _chunks(train):
            forces = atom_values(dataset, chunk, "forces").double()
            squares, count = squares + float(forces.pow(2).sum()), count + forces.numel()
        std = math.sqrt(squares / count)
    std = std if std > 0 else 1.0
    name = "+".join(keys)
    return Prepared(dataset, split, "energy" if "energy" in keys else "idx", name, "eV", True,
                    baseline, 0.0, std, atomref,
                    EnergyForcesTask(cfg.energy_weight, cfg.forces_weight, std), elements)


def _chunks(indices: Tensor, size: int = 1 << 14) -> Iterator[Tensor]:
    """:obj:`indices` in consecutive chunks of :obj:`size`."""
    for start in range(0, indices.numel(), size):
        yield indices[start:start + size]


def reference_energies(text: str, elements: Sequence[int]) -> Tensor:
    """The energies of :obj:`elements` from :obj:`text` (``"H:-13.6,C:-1029.9"``
    or ``"1:-13.6,6:-1029.9"``), in the order of :obj:`elements`; an element
    it lacks, or one it names twice, is refused."""
    from ase.data import atomic_numbers

    given: Dict[int, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition(":")
        key = key.strip()
        number = int(key) if key.isdigit() else atomic_numbers.get(key)
        if not sep or number is None:
            raise ValueError(f"--reference-energies: {item.strip()!r} is not ELEMENT:ENERGY "
                             f"(e.g. 'H:-13.6')")
        if number in given:
            raise ValueError(f"--reference-energies names element {key} twice")
        given[number] = float(value)
    missing = [z for z in elements if z not in given]
    if missing:
        raise ValueError(f"--reference-energies lacks the elements with atomic numbers "
                         f"{missing}, which the training structures hold")
    return torch.tensor([given[z] for z in elements], dtype=torch.float64)


def _check_elements(dataset, split: Dict[str, Tensor], elements: Sequence[int],
                    source: str) -> None:
    """Refuses a validation or test structure with an element that no
    training structure holds (its reference energy and embedding would be
    untrained), naming the frame and the element."""
    known = torch.tensor(elements)
    for key in ("val", "test"):
        for chunk in _chunks(split[key]):
            z, batch, frames = molecule_arrays(dataset, chunk, "idx")
            new = ~torch.isin(z, known)
            if bool(new.any()):
                first = int(new.nonzero()[0])
                raise ValueError(
                    f"{source}: frame {int(frames[batch[first]])} ({key} set) holds atomic "
                    f"number {int(z[first])}, which no training structure holds (elements in "
                    f"training: {list(elements)}); put structures with it in the training set")


#: Added to the seed of the generator that shuffles the training set, so
#: that its stream is not the one the same seed starts for initialisation.
SHUFFLE_SEED_OFFSET = 0x5EED_0000


def make_loaders(cfg: Config, prep: Prepared, device: torch.device):
    """The train, val and test loaders of :obj:`prep`'s split, and the
    generator that shuffles the training set, seeded by :obj:`cfg.init_seed`
    (default :obj:`cfg.seed`) alone, so every model and head trained at one
    seed sees the same batches (saved in checkpoints, so a resumed run draws
    the same batches). Worker processes
    (:obj:`cfg.workers`) have their own seed, so the batches are the same
    with or without them. In a distributed run the training batches are
    this rank's shards of the global batches
    (:class:`~acn_pyg.train.distributed.ShardedBatchSampler`) and the
    validation and test loaders hold its contiguous block of their set."""
    from torch_geometric.loader import DataLoader

    from acn_pyg.train import distributed

    # The batches follow the seed alone, not what building the model drew:
    # models and heads compared at one seed see the same batches.
    shuffle_rng = torch.Generator().manual_seed(SHUFFLE_SEED_OFFSET + cfg.initial_seed)
    # Each loader has its own generator (its workers' seeds): none draws
    # from the global one.
    common = dict(pin_memory=device.type == "cuda", num_workers=cfg.workers,
                  persistent_workers=cfg.workers > 0)
    train = prep.split["train"]
    sampler = distributed.ShardedBatchSampler(len(train), cfg.batch_size, shuffle_rng,
                                              distributed.rank(), distributed.world_size())
    loaders = {"train": DataLoader(prep.dataset[train], batch_sampler=sampler,
                                   generator=torch.Generator().manual_seed(cfg.seed),
                                   **common)}
    for key in ("val", "test"):
        loaders[key] = DataLoader(prep.dataset[distributed.shard(prep.split[key])],
                                  batch_size=cfg.batch_size,
                                  generator=torch.Generator().manual_seed(cfg.seed), **common)
    return loaders, shuffle_rng
