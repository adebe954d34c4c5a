from acn_pyg.datasets.qm9 import QM9, TARGETS, UNITS, target_index

__all__ = ["QM9", "TARGETS", "UNITS", "target_index"]
