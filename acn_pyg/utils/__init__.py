from acn_pyg.utils.irreps import as_irreps
from acn_pyg.utils.memory import reuse_freed_memory

__all__ = ["as_irreps", "reuse_freed_memory"]
