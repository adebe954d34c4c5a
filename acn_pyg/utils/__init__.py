from acn_pyg.utils.irreps import as_irreps

__all__ = ["as_irreps"]
