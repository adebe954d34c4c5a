r"""A compact file of chosen QM9 molecules (only what a 3D model reads), for
machines without :obj:`qm9pack`, such as a GPU node with no internet access,
and much smaller than the whole processed data set. Kept: :obj:`z`, :obj:`pos`,
:obj:`y` and :obj:`idx`, everything :class:`~acn_pyg.models.AtomCloudNet` and
the training loop read."""
import os
import pickle
import zipfile
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from acn_pyg.datasets.qm9 import content_sha256, unknown_elements
from acn_pyg.utils.io import atomic_save

FORMAT = "acn_pyg.qm9_subset.v2"
_FIELDS = ("num_total", "positions", "z", "pos", "y", "idx", "atoms")


def save_qm9_subset(dataset, indices: Sequence[int], path: str) -> None:
    r"""Writes molecules :obj:`indices` (positions in :obj:`dataset`, a
    :class:`~acn_pyg.datasets.QM9`) to :obj:`path`, with :obj:`z` (as uint8),
    :obj:`pos`, :obj:`y`, :obj:`idx` and the size of the whole data set, so
    that splits drawn over the whole data set can be looked up in the file,
    and a SHA-256 of all of them, checked by :class:`QM9Subset`. The file is
    written to a temporary file and then moved into place."""
    indices = torch.as_tensor(indices, dtype=torch.long).unique()  # sorted
    if indices.numel() == 0:
        raise ValueError("save_qm9_subset needs at least one molecule")
    if int(indices.min()) < 0 or int(indices.max()) >= len(dataset):
        raise ValueError(f"indices must lie in [0, {len(dataset)}) "
                         f"(got {int(indices.min())} .. {int(indices.max())})")
    subset = dataset[indices]
    data_list = [subset[i] for i in range(len(subset))]
    z = torch.cat([d.z for d in data_list])
    if int(z.max()) > 255 or int(z.min()) < 0:
        raise ValueError("atomic numbers do not fit in uint8")
    counts = torch.tensor([d.z.numel() for d in data_list])
    blob = {"format": FORMAT, "num_total": len(dataset), "positions": indices,
            "z": z.to(torch.uint8), "pos": torch.cat([d.pos for d in data_list]).float(),
            "y": torch.cat([d.y for d in data_list]).float(),
            "idx": torch.cat([d.idx.view(-1) for d in data_list]),
            "atoms": counts}
    blob["sha256"] = content_sha256({key: blob[key] for key in _FIELDS})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_save(blob, path)


class QM9Subset(InMemoryDataset):
    r"""The molecules written by :func:`save_qm9_subset`, as an in-memory
    data set of :obj:`Data(z, pos, y, idx)` (:obj:`y` of shape
    :obj:`[1, 19]`, PyG's targets and units, like :class:`QM9`).

    Splits are drawn over the whole data set (:obj:`num_total` molecules)
    and mapped to positions in this file with :meth:`local`, which raises if
    a molecule is not in the file rather than dropping it.

    A file that cannot be read, that was not written by
    :func:`save_qm9_subset` of this version, whose contents do not match the
    SHA-256 written with them, or that holds elements other than H, C, N, O
    and F or inconsistent atom counts, raises a :class:`ValueError` that
    names it: unlike the :class:`QM9` cache, it cannot be rebuilt here.

    Args:
        path (str): The file.
        transform (callable, optional): Applied on every access.
    """

    def __init__(self, path: str, transform: Optional[Callable] = None):
        super().__init__(None, transform)
        blob = _load_checked(path)
        atoms = blob["atoms"]
        self.num_total = int(blob["num_total"])
        self.positions = blob["positions"]
        ptr = torch.cat([atoms.new_zeros(1), atoms.cumsum(0)])
        mol = torch.arange(atoms.numel() + 1)
        data = Data(z=blob["z"].long(), pos=blob["pos"], y=blob["y"], idx=blob["idx"])
        self._data = data
        self.slices = {"z": ptr, "pos": ptr, "y": mol, "idx": mol}

    def local(self, indices: Tensor) -> Tensor:
        """Positions in this file of molecules :obj:`indices` of the whole data set."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        where = torch.searchsorted(self.positions, indices).clamp(max=self.positions.numel() - 1)
        found = self.positions[where] == indices
        if not bool(found.all()):
            missing = indices[~found]
            raise KeyError(f"{missing.numel()} requested molecules are not in this QM9 subset "
                           f"(first: {missing[:5].tolist()}); write the file for this split")
        return where

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)} of {self.num_total})"


def _load_checked(path: str) -> dict:
    """The contents of the subset file :obj:`path`, checked; a
    :class:`ValueError` naming the file and the fault otherwise."""
    try:
        blob = torch.load(path, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise ValueError(f"QM9 subset file {path} cannot be read (truncated or corrupt: "
                         f"{str(e).splitlines()[0]}); write it again with "
                         "save_qm9_subset") from None
    if not isinstance(blob, dict) or not str(blob.get("format", "")).startswith(
            "acn_pyg.qm9_subset."):
        raise ValueError(f"{path} is not a QM9 subset file written by save_qm9_subset")
    if blob["format"] != FORMAT or not set(_FIELDS) <= set(blob):
        raise ValueError(f"QM9 subset file {path} is of format {blob['format']!r}, without the "
                         f"checksum of {FORMAT!r}; write it again with save_qm9_subset")
    if content_sha256({key: blob[key] for key in _FIELDS}) != blob.get("sha256"):
        raise ValueError(f"QM9 subset file {path} is corrupt: its contents do not match their "
                         "SHA-256 checksum (bytes changed after it was written); write it "
                         "again with save_qm9_subset")
    problem = unknown_elements(blob["z"])
    if problem is None and (int(blob["atoms"].sum()) != blob["z"].numel()
                            or blob["pos"].size(0) != blob["z"].numel()):
        problem = "atom counts are inconsistent"
    if problem is not None:
        raise ValueError(f"QM9 subset file {path} is corrupt: {problem}")
    return blob
