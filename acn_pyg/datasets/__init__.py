from acn_pyg.datasets.atoms import AtomsDataset
from acn_pyg.datasets.qm9 import QM9, TARGETS, UNITS, target_index
from acn_pyg.datasets.qm9_subset import QM9Subset, save_qm9_subset

__all__ = ["AtomsDataset", "QM9", "QM9Subset", "TARGETS", "UNITS", "save_qm9_subset",
           "target_index"]
