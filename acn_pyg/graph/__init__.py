from acn_pyg.graph.full import full_graph
from acn_pyg.graph.radius import HAS_TORCH_CLUSTER, RadiusGraph, radius_graph

__all__ = ["radius_graph", "full_graph", "RadiusGraph", "HAS_TORCH_CLUSTER"]
