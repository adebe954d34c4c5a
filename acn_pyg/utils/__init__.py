from acn_pyg.utils.irreps import as_irreps
from acn_pyg.utils.memory import reuse_freed_memory
from acn_pyg.utils.prediction_cache import PredictionCache

__all__ = ["as_irreps", "reuse_freed_memory", "PredictionCache"]
