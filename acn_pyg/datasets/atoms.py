import hashlib
import os
import warnings
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.data.separate import separate

from acn_pyg.datasets.cache import (check_cache, filtered_and_transformed, load_checked,
                                    write_cache)
from acn_pyg.datasets.disk import check_store, open_store, write_store
from acn_pyg.utils.checks import MAX_ATOMIC_NUMBER

#: Calculator results with one row per atom (ASE's names).
PER_ATOM_RESULTS = frozenset(("forces", "charges", "magmoms", "energies", "stresses"))
#: Bump when the processed layout changes; old caches are then rebuilt.
PROCESS_VERSION = 1


class AtomsDataset(InMemoryDataset):
    r"""Structures from any file that :func:`ase.io.read` reads (extended
    XYZ, ASE databases, and every other format ASE knows), with the
    properties the user names, as a PyG dataset.

    Each structure holds :obj:`z` (atomic numbers, :obj:`[n]`), :obj:`pos`
    (Angstrom, :obj:`[n, 3]`, float32), :obj:`idx` (its frame number in the
    file) and one tensor per property, float64, shaped so that PyG's
    batching concatenates them the right way:

    * a per-structure scalar (:obj:`energy`): :obj:`[1, 1]`;
    * a per-structure vector of length :math:`k` (a dipole): :obj:`[1, k]`;
    * a per-structure 3x3 tensor (a polarizability; a stress given as 3x3 or
      as 6 Voigt components stays as given): :obj:`[1, 3, 3]`;
    * a per-atom scalar (charges): :obj:`[n, 1]`; a per-atom vector
      (:obj:`forces`): :obj:`[n, 3]`.

    A property is read from the frame's per-atom arrays (:obj:`atoms.arrays`),
    else its :obj:`atoms.info`, else the results of its attached calculator
    (where ASE's extended-XYZ reader puts :obj:`energy` and :obj:`forces`);
    per-atom are the arrays and the calculator results of
    :data:`PER_ATOM_RESULTS`. Values are in the file's units (eV and eV/A
    for extended XYZ written by ASE).

    The file is read once and cached in :obj:`root/processed`, with a
    SHA-256 of the source file, the property keys, the processing version
    and the pre-transform and pre-filter; a cache that does not match them
    or its own checksum is rebuilt with a warning. Refused with an error
    that names the file and the frame: a frame without a requested key
    (the error lists the keys it has), a NaN or infinite value, a property
    of the wrong shape, an atomic number outside 1 to 100, and a periodic
    frame (:obj:`pbc` true along any axis: periodic cells are not
    supported, and would be wrong as molecules).

    With :obj:`on_disk=True` the frames are streamed from the file
    (:func:`ase.io.iread`) into a store of memory-mapped arrays
    (:mod:`acn_pyg.datasets.disk`) in :obj:`root/processed`, and each
    structure is read from it when it is used: memory stays flat however
    many frames the file holds, and the DataLoader workers and the
    processes of a node share the pages. The store is checked like the
    cache (the source's SHA-256, the settings, and the SHA-256 of every
    file of the store, read in chunks) when the dataset is opened.

    Args:
        root (str): Folder of the processed cache.
        path (str): The structure file.
        properties (list of str or dict, optional): The properties to read:
            names, or a mapping from the name in the dataset to the key in
            the file (e.g. :obj:`{"energy": "REF_energy"}`).
            (default: :obj:`("energy", "forces")`)
        index (str, optional): Which frames, as :func:`ase.io.read` takes it.
            (default: :obj:`":"`, all)
        format (str, optional): The file format, if ASE cannot tell it from
            the name. (default: :obj:`None`)
        transform (callable, optional): Applied on every access.
        pre_transform (callable, optional): Applied once before saving.
        pre_filter (callable, optional): Keeps a structure when it returns
            :obj:`True`.
        force_reload (bool, optional): Rebuild the cache. (default: :obj:`False`)
        on_disk (bool, optional): Keep the structures on disk, read lazily,
            instead of in memory. (default: :obj:`False`)
    """

    def __init__(self, root: str, path: str,
                 properties: Union[Sequence[str], Mapping[str, str], None] = None,
                 index: str = ":", format: Optional[str] = None,
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None, force_reload: bool = False,
                 on_disk: bool = False):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no structure file at {path!r}")
        self.path = os.path.abspath(path)
        self.properties = _property_keys(properties)
        self.index = index
        self.format = format
        self.on_disk = bool(on_disk)
        super().__init__(root, transform, pre_transform, pre_filter, force_reload=force_reload)
        if self.on_disk:
            self._open_store(check=True)
            return
        blob = load_checked(self.processed_paths[0], self._check, self.process,
                            f"AtomsDataset ({os.path.basename(path)})")
        self._data = Data.from_dict(blob["data"])
        self.slices = blob["slices"]

    @property
    def store(self) -> str:
        """The folder of the on-disk store (:obj:`on_disk=True`)."""
        return os.path.dirname(self.processed_paths[0])

    def _open_store(self, check: bool) -> None:
        if check:
            problem = check_store(self.store, self._fingerprint())
            if problem is not None:
                warnings.warn(f"AtomsDataset ({os.path.basename(self.path)}) store {self.store} "
                              f"is stale or corrupt: {problem}; rebuilding it")
                self.process()
                problem = check_store(self.store, self._fingerprint())
                if problem is not None:
                    raise RuntimeError(f"AtomsDataset store {self.store} failed its checks "
                                       f"after a rebuild: {problem}")
        data, self.slices, _ = open_store(self.store)
        self._data = Data.from_dict(data)
        self._data_list = None

    def get(self, idx: int) -> Data:
        if not self.on_disk:
            return super().get(idx)
        # Not kept: a cache of every structure read would grow with the data.
        return separate(cls=Data, batch=self._data, idx=idx, slice_dict=self.slices,
                        decrement=False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.on_disk:  # memory maps are reopened, not pickled (DataLoader workers)
            for key in ("_data", "slices", "_data_list"):
                state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.on_disk:
            self._open_store(check=False)

    @property
    def raw_file_names(self) -> List[str]:
        return []

    @property
    def processed_file_names(self) -> List[str]:
        # One cache per file and settings, so that several share a root.
        key = repr((self.path, sorted(self.properties.items()), self.index, self.format))
        tag = hashlib.sha256(key.encode()).hexdigest()[:12]
        name = os.path.splitext(os.path.basename(self.path))[0]
        if self.on_disk:
            return [f"{name}_{tag}_v{PROCESS_VERSION}_disk/meta.json"]
        return [f"{name}_{tag}_v{PROCESS_VERSION}.pt"]

    def download(self) -> None:
        pass

    def _fingerprint(self) -> Dict[str, object]:
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return {"process_version": PROCESS_VERSION, "source": self.path,
                "source_sha256": digest.hexdigest(),
                "properties": sorted(self.properties.items()), "index": self.index,
                "format": self.format, "pre_transform": repr(self.pre_transform),
                "pre_filter": repr(self.pre_filter)}

    def _check(self, blob) -> Optional[str]:
        return check_cache(blob, self._fingerprint())

    def process(self) -> None:
        import ase.io

        if self.on_disk:
            self._process_to_disk()
            return
        frames = ase.io.read(self.path, index=self.index, format=self.format)
        if not isinstance(frames, list):
            frames = [frames]
        if not frames:
            raise ValueError(f"{self.path}: no structures (index {self.index!r})")
        structures = [frame_to_data(atoms, self.properties, i, self.path)
                      for i, atoms in enumerate(frames)]
        data, slices = self.collate(filtered_and_transformed(self, structures))
        write_cache(self, data, slices, self._fingerprint())

    def _process_to_disk(self) -> None:
        import ase.io

        def structures():
            for i, atoms in enumerate(ase.io.iread(self.path, index=self.index,
                                                   format=self.format)):
                data = frame_to_data(atoms, self.properties, i, self.path)
                if self.pre_filter is not None and not self.pre_filter(data):
                    continue
                if self.pre_transform is not None:
                    data = self.pre_transform(data)
                yield data, f"{self.path}, frame {i}"

        os.makedirs(self.processed_dir, exist_ok=True)
        try:
            write_store(self.store, structures(), self._fingerprint())
        except ValueError as e:
            if str(e) == "no structures to store":
                raise ValueError(f"{self.path}: no structures (index {self.index!r})") from None
            raise

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({len(self)}, {os.path.basename(self.path)}, "
                f"properties={sorted(self.properties)})")


def _property_keys(properties) -> Dict[str, str]:
    if properties is None:
        properties = ("energy", "forces")
    if isinstance(properties, str):
        properties = (properties,)
    keys = dict(properties) if isinstance(properties, Mapping) else {p: p for p in properties}
    reserved = {"z", "pos", "idx", "batch", "edge_index"} & set(keys)
    if reserved:
        raise ValueError(f"property names {sorted(reserved)} are reserved for the structure "
                         f"itself; name them otherwise (e.g. {{'my_{min(reserved)}': "
                         f"'{min(reserved)}'}})")
    return keys


def _lookup(atoms, key: str) -> Tuple[Optional[np.ndarray], bool]:
    """The value of :obj:`key` on one frame and whether it is per atom;
    :obj:`None` if the frame has no such key."""
    if key in atoms.arrays:
        return np.asarray(atoms.arrays[key]), True
    if key in atoms.info:
        return np.asarray(atoms.info[key]), False
    results = _results(atoms)
    if key in results:
        return np.asarray(results[key]), key in PER_ATOM_RESULTS
    return None, False


def _results(atoms) -> dict:
    """The results of the frame's calculator (none without one)."""
    return getattr(atoms.calc, "results", None) or {}


def _available(atoms) -> List[str]:
    return sorted((set(atoms.arrays) - {"numbers", "positions"}) | set(atoms.info)
                  | set(_results(atoms)))


def frame_to_data(atoms, properties: Mapping[str, str], frame: int, source: str) -> Data:
    """One :class:`ase.Atoms` as a :class:`~torch_geometric.data.Data` with
    the shapes of :class:`AtomsDataset`, or a :class:`ValueError` naming
    :obj:`source`, the frame and what is wrong."""
    where = f"{source}, frame {frame}"
    if atoms.pbc.any():
        raise ValueError(
            f"{where} is periodic (pbc={atoms.pbc.tolist()}): periodic cells are not supported "
            f"yet, and treating them as molecules would be wrong. For a molecule, write the "
            f"frame with pbc=False")
    n = len(atoms)
    if n == 0:
        raise ValueError(f"{where} has no atoms")
    z = torch.from_numpy(atoms.numbers.astype(np.int64))
    if int(z.min()) < 1 or int(z.max()) > MAX_ATOMIC_NUMBER:
        raise ValueError(f"{where} holds atomic numbers outside 1..{MAX_ATOMIC_NUMBER} "
                         f"({sorted(set(z.tolist()))})")
    pos = np.asarray(atoms.positions, dtype=np.float64)
    if not np.isfinite(pos).all():
        raise ValueError(f"{where} has NaN or infinite positions")
    data = Data(z=z, pos=torch.from_numpy(pos).float(), idx=torch.tensor([frame]))
    for name, key in properties.items():
        value, per_atom = _lookup(atoms, key)
        if value is None:
            raise ValueError(f"{where} has no '{key}' (for property '{name}'); it has: "
                             f"{', '.join(_available(atoms)) or 'nothing'}")
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{where}: '{key}' is not numeric (got {value.dtype})")
        value = value.astype(np.float64)
        if not np.isfinite(value).all():
            raise ValueError(f"{where}: '{key}' holds NaN or infinite values")
        data[name] = torch.from_numpy(_shaped(value, per_atom, n, f"{where}: '{key}'"))
    return data


def _shaped(value: np.ndarray, per_atom: bool, n: int, what: str) -> np.ndarray:
    if per_atom:
        if value.ndim == 0 or value.shape[0] != n:
            raise ValueError(f"{what} is per atom but has shape {list(value.shape)}, "
                             f"not [{n}, ...]")
        return value.reshape(n, -1) if value.ndim == 1 else value
    if value.ndim == 0:
        return value.reshape(1, 1)
    if value.ndim == 1:
        return value.reshape(1, -1)
    return value.reshape(1, *value.shape)
