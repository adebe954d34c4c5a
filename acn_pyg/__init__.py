"""AtomCloudNet for PyTorch Geometric."""
from acn_pyg import datasets, graph, models, nn, transforms, units, utils
from acn_pyg.datasets import QM9
from acn_pyg.graph import RadiusGraph, radius_graph
from acn_pyg.inference import load_model, save_model
from acn_pyg.models import AtomCloudNet
from acn_pyg.nn import AtomCloudConv
from acn_pyg.transforms import ManyBodyFeatures

__version__ = "0.7.0"

__all__ = ["datasets", "graph", "models", "nn", "transforms", "units", "utils",
           "AtomCloudConv", "AtomCloudNet", "radius_graph", "RadiusGraph", "ManyBodyFeatures",
           "QM9", "load_model", "save_model", "__version__"]
