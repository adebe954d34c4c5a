import glob
import importlib.metadata
import importlib.util
import os
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from acn_pyg.datasets.cache import check_cache, filtered_and_transformed, load_checked, write_cache
from acn_pyg.datasets.cache import content_sha256  # noqa: F401 (imported from here by users)
from acn_pyg.units import HARTREE_TO_EV, QM9_ATOM_ENERGIES_HARTREE

#: PyG's 19 QM9 targets, in PyG's order, with their units.
TARGETS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "cv",
           "U0_atom", "U_atom", "H_atom", "G_atom", "A", "B", "C")
UNITS = ("D", "a0^3", "eV", "eV", "eV", "a0^2", "eV", "eV", "eV", "eV", "eV", "cal/mol K",
         "eV", "eV", "eV", "eV", "GHz", "GHz", "GHz")
#: What each target is (PyG's QM9 documentation), for help texts.
DESCRIPTIONS = ("dipole moment", "isotropic polarizability", "HOMO energy", "LUMO energy",
                "HOMO-LUMO gap", "electronic spatial extent", "zero-point vibrational energy",
                "internal energy at 0 K", "internal energy at 298.15 K", "enthalpy at 298.15 K",
                "free energy at 298.15 K", "heat capacity at 298.15 K",
                "atomization energy at 0 K", "atomization energy at 298.15 K",
                "atomization enthalpy at 298.15 K", "atomization free energy at 298.15 K",
                "rotational constant A", "rotational constant B", "rotational constant C")
ENERGY_TARGETS = frozenset(TARGETS[i] for i in (2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15))

#: The qm9pack columns behind each target, and the factor to PyG's unit.
_HARTREE_COLUMNS = {"homo": "HOMO_au", "lumo": "LUMO_au", "gap": "HOMO_LUMO_gap_au",
                    "zpve": "ZPVE_au"}
_ENERGY_COLUMNS = ("InternalEnergy_0K_au", "InternalEnergy_298K_au", "Enthalphy_298K_au",
                   "GibbsFreeEnergy_298K_au")
_PLAIN_COLUMNS = {"mu": "Dipole_debye", "alpha": "Polarizability_bohr3", "r2": "R2_bohr2",
                  "cv": "Heatcapacity_Cv_cal_mol_K", "A": "RotA_GHz", "B": "RotB_GHz",
                  "C": "RotC_GHz"}
_POLARIZABILITY = ("A_xx", "A_xy", "A_xz", "A_xy", "A_yy", "A_yz", "A_xz", "A_yz", "A_zz")
_SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}

#: Bump when the processed layout changes; old caches are then rebuilt.
PROCESS_VERSION = 2


def unknown_elements(z: Tensor) -> Optional[str]:
    """:obj:`None` if every atomic number in :obj:`z` is one of QM9's
    elements (H, C, N, O, F), else what is wrong, naming the first other."""
    bad = ~torch.isin(z, torch.tensor(sorted(_SYMBOLS.values()), dtype=z.dtype))
    if not bool(bad.any()):
        return None
    first = int(bad.nonzero()[0])
    return (f"it holds atomic numbers other than those of {', '.join(_SYMBOLS)} "
            f"({int(z[first])} at atom {first})")


def qm9pack_data_dir() -> str:
    """The CSV folder of the installed ``qm9pack``, found without importing it
    (its import needs ``pkg_resources``, which recent setuptools dropped)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("QM9 needs the 'qm9pack' package: pip install qm9pack")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def target_index(target) -> int:
    """Index of a target given by name (``"U0"``, case-insensitive) or index."""
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        index = int(target)
        if not 0 <= index < len(TARGETS):
            raise ValueError(f"target index must be in 0..{len(TARGETS) - 1} (got {index})")
        return index
    lowered = [t.lower() for t in TARGETS]
    if str(target).lower() not in lowered:
        raise ValueError(f"unknown QM9 target {target!r}; choose from {', '.join(TARGETS)}")
    return lowered.index(str(target).lower())


class QM9(InMemoryDataset):
    r"""The QM9 data set (Ramakrishnan et al., 2014) of 130,831 small organic
    molecules, built offline from the :obj:`qm9pack` package, in the format
    of :class:`torch_geometric.datasets.QM9` for everything a 3D model uses.

    Each molecule holds :obj:`z` (atomic numbers), :obj:`pos` (Angstrom),
    :obj:`y` of shape :obj:`[1, 19]` with PyG's 19 targets in PyG's order and
    units (see :data:`TARGETS` and :data:`UNITS`; energies in eV,
    atomization energies :obj:`*_atom` relative to the free atoms), :obj:`idx`
    and :obj:`name` (:obj:`"gdb_1"`, ...), plus :obj:`charges` (Mulliken
    partial charges per atom, e), :obj:`polarizability` (the :obj:`[1, 3, 3]`
    static polarizability tensor, :math:`a_0^3`), :obj:`frequencies`
    (harmonic frequencies, cm\ :sup:`-1`) and :obj:`smiles`.

    Processing runs once and is cached in :obj:`root/processed`. The cache
    records the source files, the processing version, the pre-transform and
    pre-filter, and a SHA-256 of its contents (:func:`content_sha256`). A
    cache that does not match them, whose contents do not match their
    checksum, that holds elements other than H, C, N, O and F, or that fails
    to load or to pass consistency checks, is rebuilt with a warning that
    names the file and the fault, never silently used. It is written to a
    temporary file and then moved into place, so that runs started at once,
    or a write cut short, never leave or read half a cache.

    Args:
        root (str): Root folder.
        transform (callable, optional): Applied on every access.
        pre_transform (callable, optional): Applied once before saving.
        pre_filter (callable, optional): Keeps a molecule when it returns
            :obj:`True`.
        source_dir (str, optional): Folder of qm9pack-format CSV files
            (:obj:`qm9_part*.csv`, :obj:`qm9_polarizability.csv`).
            (default: :obj:`None`, the installed :obj:`qm9pack`)
        force_reload (bool, optional): Rebuild the cache. (default: :obj:`False`)
    """

    targets = TARGETS
    units = UNITS

    def __init__(self, root: str, transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None, pre_filter: Optional[Callable] = None,
                 source_dir: Optional[str] = None, force_reload: bool = False):
        self.source_dir = source_dir or qm9pack_data_dir()
        super().__init__(root, transform, pre_transform, pre_filter, force_reload=force_reload)
        self._load_checked()

    @property
    def raw_file_names(self) -> List[str]:
        return []

    @property
    def processed_file_names(self) -> List[str]:
        return [f"qm9_acn_v{PROCESS_VERSION}.pt"]

    def download(self) -> None:
        if not self._source_files():
            raise FileNotFoundError(
                f"no qm9_part*.csv files in {self.source_dir}; install qm9pack "
                f"(pip install qm9pack) or pass source_dir")

    def _source_files(self) -> List[str]:
        return sorted(glob.glob(os.path.join(self.source_dir, "qm9_part*.csv")))

    def _fingerprint(self) -> Dict[str, object]:
        files = self._source_files() + [os.path.join(self.source_dir, "qm9_polarizability.csv")]
        try:
            version = importlib.metadata.version("qm9pack")
        except importlib.metadata.PackageNotFoundError:
            version = "none"
        return {
            "process_version": PROCESS_VERSION,
            "qm9pack": version,
            "sources": [(os.path.basename(f), os.path.getsize(f)) for f in files
                        if os.path.exists(f)],
            "source_dir": os.path.abspath(self.source_dir),
            "pre_transform": repr(self.pre_transform),
            "pre_filter": repr(self.pre_filter),
        }

    def _load_checked(self) -> None:
        blob = load_checked(self.processed_paths[0], self._check, self.process, "QM9")
        self._data = Data.from_dict(blob["data"])
        self.slices = blob["slices"]

    def _check(self, blob) -> Optional[str]:
        problem = check_cache(blob, self._fingerprint())
        if problem is not None:
            return problem
        data, slices = blob["data"], blob["slices"]
        num = len(data["name"])
        for key in ("z", "pos", "y", "idx"):
            if key not in slices or slices[key].numel() != num + 1:
                return f"slices of '{key}' do not match {num} molecules"
        if int(slices["z"][-1]) != data["z"].numel() or data["pos"].size(0) != data["z"].numel():
            return "atom counts are inconsistent"
        if not bool(torch.isfinite(data["pos"]).all()):
            return "positions are not finite"
        return unknown_elements(data["z"])

    def process(self) -> None:
        data, slices = _read_qm9pack(self._source_files(),
                                     os.path.join(self.source_dir, "qm9_polarizability.csv"))
        if self.pre_filter is not None or self.pre_transform is not None:
            molecules = [_select(data, slices, i) for i in range(len(data.name))]
            data, slices = self.collate(filtered_and_transformed(self, molecules))
        write_cache(self, data, slices, self._fingerprint())

    @staticmethod
    def atomref(target) -> Optional[Tensor]:
        """Free-atom reference of a total-energy target (U0, U, H, G) in eV,
        indexed by atomic number, shape ``[100, 1]``; ``None`` for others (as PyG)."""
        index = target_index(target)
        if index not in (7, 8, 9, 10):
            return None
        out = torch.zeros(100)
        for z, energies in QM9_ATOM_ENERGIES_HARTREE.items():
            out[z] = energies[index - 7] * HARTREE_TO_EV
        return out.view(-1, 1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)})"


def _floats(column) -> np.ndarray:
    text = ",".join(column.tolist()).replace("[", "").replace("]", "")
    return np.array(text.split(","), dtype=np.float64)


def _read_qm9pack(part_files: List[str], polarizability_file: str):
    import pandas as pd

    if not part_files:
        raise FileNotFoundError("no qm9_part*.csv source files")
    df = pd.concat([pd.read_csv(f) for f in part_files], ignore_index=True)
    pol = pd.read_csv(polarizability_file)
    df = df.merge(pol, on="XYZ_file", how="left", validate="one_to_one")
    if df[list(_POLARIZABILITY)].isna().any().any():
        raise ValueError("some molecules lack a polarizability tensor in " + polarizability_file)
    df = df.sort_values("Index", kind="stable").reset_index(drop=True)

    num_atoms = df["N_atoms"].to_numpy()
    total = int(num_atoms.sum())
    symbols = ",".join(df["Elements"].tolist()).replace("[", "").replace("]", "").replace("'", "")
    z = np.array([_SYMBOLS[s.strip()] for s in symbols.split(",")], dtype=np.int64)
    pos = _floats(df["XYZ_Ang"]).reshape(-1, 3)
    charges = _floats(df["Mulliken_pop"])
    frequencies = _floats(df["Harmonic_Freq_cmi"])
    num_freq = (df["Harmonic_Freq_cmi"].str.count(",") + 1).to_numpy()
    if not (z.size == pos.shape[0] == charges.size == total) or frequencies.size != num_freq.sum():
        raise ValueError("qm9pack rows are inconsistent: atom or frequency counts do not match")

    y = np.zeros((len(df), len(TARGETS)), dtype=np.float64)
    for name, column in _PLAIN_COLUMNS.items():
        y[:, TARGETS.index(name)] = df[column].to_numpy()
    for name, column in _HARTREE_COLUMNS.items():
        y[:, TARGETS.index(name)] = df[column].to_numpy() * HARTREE_TO_EV
    mol_of_atom = np.repeat(np.arange(len(df)), num_atoms)
    for k, column in enumerate(_ENERGY_COLUMNS):
        energy = df[column].to_numpy()
        reference = np.bincount(mol_of_atom, weights=_reference_lookup(k)[z],
                                minlength=len(df))
        y[:, 7 + k] = energy * HARTREE_TO_EV
        y[:, 12 + k] = (energy - reference) * HARTREE_TO_EV

    atom_ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(num_atoms)]))
    freq_ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(num_freq)]))
    mol_ptr = torch.arange(len(df) + 1)
    data = Data(
        z=torch.from_numpy(z), pos=torch.from_numpy(pos).float(), y=torch.from_numpy(y).float(),
        idx=torch.arange(len(df)), name=[f"gdb_{i}" for i in df["Index"].tolist()],
        charges=torch.from_numpy(charges).float(),
        polarizability=torch.tensor(df[list(_POLARIZABILITY)].to_numpy(),
                                    dtype=torch.float).view(-1, 3, 3),
        frequencies=torch.from_numpy(frequencies).float(), smiles=df["SMILES"].tolist())
    slices = {"z": atom_ptr, "pos": atom_ptr, "charges": atom_ptr, "y": mol_ptr, "idx": mol_ptr,
              "name": mol_ptr, "polarizability": mol_ptr, "frequencies": freq_ptr,
              "smiles": mol_ptr}
    return data, slices


def _reference_lookup(k: int) -> np.ndarray:
    table = np.zeros(101)
    for z, energies in QM9_ATOM_ENERGIES_HARTREE.items():
        table[z] = energies[k]
    return table


def _select(data: Data, slices: Dict[str, Tensor], i: int) -> Data:
    out = Data()
    for key, ptr in slices.items():
        start, end = int(ptr[i]), int(ptr[i + 1])
        value = data[key]
        out[key] = value[start:end] if isinstance(value, Tensor) else (
            value[start] if end - start == 1 else value[start:end])
    return out
