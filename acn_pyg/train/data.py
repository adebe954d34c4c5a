"""The data side of a run: disjoint random splits, the per-element linear
baseline fitted on the training molecules, and the loaders."""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from acn_pyg.datasets.qm9 import QM9, TARGETS, UNITS, target_index
from acn_pyg.datasets.qm9_subset import QM9Subset
from acn_pyg.train.config import EXTENSIVE_TARGETS, Config

#: The element columns of the linear baseline (QM9 has H, C, N, O, F).
ELEMENTS = (1, 6, 7, 8, 9)


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


def element_counts(z: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """How many atoms of each of :data:`ELEMENTS` every graph holds,
    :math:`(|\\mathcal{G}|, 5)` in float64."""
    counts = torch.zeros(num_graphs, len(ELEMENTS), dtype=torch.float64)
    for k, element in enumerate(ELEMENTS):
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
    """

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


def molecule_arrays(dataset, indices: Tensor, target: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Atomic numbers, batch vector and target column of the molecules
    :obj:`indices` of an in-memory :obj:`dataset`, without collating them."""
    data = dataset._data
    ptr = dataset.slices["z"]
    counts = ptr[indices + 1] - ptr[indices]
    z = torch.cat([data.z[ptr[i]:ptr[i + 1]] for i in indices.tolist()])
    batch = torch.repeat_interleave(torch.arange(indices.numel()), counts)
    return z, batch, data.y[indices, target]


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

    def baseline_prediction(self, key: str) -> Tensor:
        """The linear baseline's prediction for the molecules of split
        :obj:`key`, in their order (float64)."""
        z, batch, _ = molecule_arrays(self.dataset, self.split[key], self.t_index)
        return self.baseline.predict(element_counts(z, batch, self.split[key].numel()))


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
    return Prepared(dataset, split, t_index, name, unit, extensive, baseline, mean, std, atomref)


def make_loaders(cfg: Config, prep: Prepared, device: torch.device):
    """The train, val and test loaders of :obj:`prep`'s split, and the
    generator that shuffles the training set (saved in checkpoints, so a
    resumed run draws the same batches). Worker processes
    (:obj:`cfg.workers`) have their own seed, so the batches are the same
    with or without them."""
    from torch_geometric.loader import DataLoader

    shuffle_rng = torch.Generator().manual_seed(int(torch.randint(2 ** 62, ())))
    loaders = {key: DataLoader(prep.dataset[idx], batch_size=cfg.batch_size,
                               sampler=(torch.utils.data.RandomSampler(idx, generator=shuffle_rng)
                                        if key == "train" else None),
                               generator=torch.Generator().manual_seed(cfg.seed),
                               pin_memory=device.type == "cuda", num_workers=cfg.workers,
                               persistent_workers=cfg.workers > 0)
               for key, idx in prep.split.items()}
    return loaders, shuffle_rng
