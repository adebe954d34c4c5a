from acn_pyg.nn.conv import AtomCloudConv, ChannelwiseTensorProduct, SymmetricProduct
from acn_pyg.nn.element_linear import ElementLinear
from acn_pyg.nn.denoising_head import DenoisingHead, centered_noise, denoising_loss
from acn_pyg.nn.embedding import BesselBasis, EdgeEmbedding, EdgeFeatures, PolynomialCutoff
from acn_pyg.nn.gate import Gate
from acn_pyg.nn.heads import (AtomicChargesHead, DipoleHead, SymmetricTensorHead,
                              total_charge_correction)
from acn_pyg.nn.irreps_linear import IrrepsLinear
from acn_pyg.nn.many_body import MANY_BODY_TERMS, ManyBodyTerms, signed_log1p
from acn_pyg.nn.normalized import NormalizedEmbedding, NormalizedLinear, weight_normalized
from acn_pyg.nn.pool import global_power_mean_pool
from acn_pyg.nn.radial_mlp import RadialMLP, stacked_radial_weights

__all__ = [
    "AtomCloudConv",
    "ChannelwiseTensorProduct",
    "SymmetricProduct",
    "DenoisingHead",
    "centered_noise",
    "denoising_loss",
    "BesselBasis",
    "PolynomialCutoff",
    "EdgeEmbedding",
    "EdgeFeatures",
    "ElementLinear",
    "Gate",
    "AtomicChargesHead",
    "DipoleHead",
    "SymmetricTensorHead",
    "total_charge_correction",
    "IrrepsLinear",
    "ManyBodyTerms",
    "MANY_BODY_TERMS",
    "signed_log1p",
    "NormalizedEmbedding",
    "NormalizedLinear",
    "weight_normalized",
    "global_power_mean_pool",
    "RadialMLP",
    "stacked_radial_weights",
]
