"""ASE integration: :class:`AtomCloudCalculator`, a trained model (or an
ensemble) as an :class:`ase.calculators.calculator.Calculator`."""
from acn_pyg.ase.calculator import AtomCloudCalculator

__all__ = ["AtomCloudCalculator"]
