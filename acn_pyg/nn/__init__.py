from acn_pyg.nn.conv import AtomCloudConv, ChannelwiseTensorProduct
from acn_pyg.nn.embedding import BesselBasis, EdgeEmbedding, EdgeFeatures, PolynomialCutoff
from acn_pyg.nn.gate import Gate
from acn_pyg.nn.irreps_linear import IrrepsLinear
from acn_pyg.nn.radial_mlp import RadialMLP

__all__ = [
    "AtomCloudConv",
    "ChannelwiseTensorProduct",
    "BesselBasis",
    "PolynomialCutoff",
    "EdgeEmbedding",
    "EdgeFeatures",
    "Gate",
    "IrrepsLinear",
    "RadialMLP",
]
