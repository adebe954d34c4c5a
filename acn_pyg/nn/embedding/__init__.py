from acn_pyg.nn.embedding.cutoff import PolynomialCutoff
from acn_pyg.nn.embedding.edge_embedding import (EdgeEmbedding, EdgeFeatures, neighbor_slots,
                                                 plan_buckets)
from acn_pyg.nn.embedding.radial_basis import BesselBasis
from acn_pyg.nn.embedding.spherical_harmonics import SphericalHarmonics

__all__ = ["BesselBasis", "PolynomialCutoff", "EdgeEmbedding", "EdgeFeatures",
           "SphericalHarmonics", "neighbor_slots", "plan_buckets"]
