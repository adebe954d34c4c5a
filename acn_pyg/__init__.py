"""AtomCloudNet for PyTorch Geometric."""
from acn_pyg import datasets, graph, models, nn, transforms, units, utils
from acn_pyg.graph import radius_graph
from acn_pyg.models import AtomCloudNet
from acn_pyg.nn import AtomCloudConv

__version__ = "0.2.13"

__all__ = ["datasets", "graph", "models", "nn", "transforms", "units", "utils",
           "radius_graph", "AtomCloudConv", "AtomCloudNet",
           "__version__"]
