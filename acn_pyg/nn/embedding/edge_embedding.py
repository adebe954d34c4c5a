from typing import NamedTuple

import torch
from e3nn import o3
from torch import Tensor

from acn_pyg.nn.embedding.cutoff import PolynomialCutoff
from acn_pyg.nn.embedding.radial_basis import BesselBasis


class EdgeFeatures(NamedTuple):
    """Per-edge geometry shared by every layer of a model."""
    sh: Tensor        #: spherical harmonics, [E, (lmax + 1)^2]
    basis: Tensor     #: radial basis, [E, num_basis]
    envelope: Tensor  #: smooth cutoff envelope, [E, 1]


class EdgeEmbedding(torch.nn.Module):
    r"""Embeds each edge :math:`j \to i` by the direction and length of
    :math:`\mathbf{r}_{ij} = \mathbf{p}_j - \mathbf{p}_i`: real spherical
    harmonics :math:`Y^{(l)}(\hat{\mathbf{r}}_{ij})` for
    :math:`l = 0, \dots, l_\mathrm{max}` (e3nn's, :obj:`"component"`
    normalisation), a :class:`BesselBasis` of :math:`|\mathbf{r}_{ij}|` and a
    :class:`PolynomialCutoff` envelope. A model computes these once per
    forward and shares them across its layers.

    Args:
        cutoff (float): The cutoff radius in Angstrom.
        lmax (int, optional): The largest spherical-harmonic degree.
            (default: :obj:`2`)
        num_basis (int, optional): The number of radial basis functions.
            (default: :obj:`8`)

    Shapes:
        - **input:** pos :math:`(|\mathcal{V}|, 3)`, edge_index :math:`(2, |\mathcal{E}|)`
        - **output:** :class:`EdgeFeatures` with sh :math:`(|\mathcal{E}|, (l_\mathrm{max}+1)^2)`,
          basis :math:`(|\mathcal{E}|, N)` and envelope :math:`(|\mathcal{E}|, 1)`
    """

    def __init__(self, cutoff: float, lmax: int = 2, num_basis: int = 8):
        super().__init__()
        self.cutoff = float(cutoff)
        self.lmax = int(lmax)
        self.sh_irreps = o3.Irreps.spherical_harmonics(self.lmax)
        self.radial_basis = BesselBasis(cutoff, num_basis)
        self.envelope = PolynomialCutoff(cutoff)

    def reset_parameters(self) -> None:
        self.radial_basis.reset_parameters()

    def forward(self, pos: Tensor, edge_index: Tensor) -> EdgeFeatures:
        vec = pos[edge_index[0]] - pos[edge_index[1]]
        length = vec.norm(dim=-1)
        sh = o3.spherical_harmonics(list(range(self.lmax + 1)), vec, normalize=True,
                                    normalization="component")
        return EdgeFeatures(sh, self.radial_basis(length), self.envelope(length))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(cutoff={self.cutoff}, lmax={self.lmax}, "
                f"num_basis={self.radial_basis.num_basis})")
