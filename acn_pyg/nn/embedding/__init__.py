from acn_pyg.nn.embedding.cutoff import PolynomialCutoff
from acn_pyg.nn.embedding.edge_embedding import EdgeEmbedding, EdgeFeatures, neighbor_slots
from acn_pyg.nn.embedding.radial_basis import BesselBasis

__all__ = ["BesselBasis", "PolynomialCutoff", "EdgeEmbedding", "EdgeFeatures", "neighbor_slots"]
