from typing import NamedTuple, Optional, Tuple

import torch
from e3nn import o3
from torch import Tensor

from acn_pyg.nn.embedding.cutoff import PolynomialCutoff
from acn_pyg.nn.embedding.radial_basis import BesselBasis
from acn_pyg.nn.embedding.spherical_harmonics import SphericalHarmonics
from acn_pyg.utils.checks import check_edge_lengths, is_tracing


class EdgeFeatures(NamedTuple):
    r"""Edge geometry shared by every layer of a model.

    ``sh_dense`` holds the spherical harmonics of each atom's neighbours
    times the cutoff envelope, :math:`f_\mathrm{cut}(r_{ij})\, Y(\hat{\mathbf{r}}_{ij})`,
    padded with zeros to the largest neighbour count :math:`K`: edge ``e``
    sits at flat position ``slot[e] = i * K + rank`` of
    ``sh_dense.view(-1, (lmax + 1) ** 2)``. The envelope rides on the
    harmonics, computed once, rather than on every layer's radial weights:
    the same products, fewer of them.
    """
    sh_dense: Tensor  #: envelope x spherical harmonics per atom, [N, K, (lmax + 1)^2]
    slot: Tensor      #: flat padded position of each edge, [E]
    basis: Tensor     #: radial basis, [E, num_basis]
    envelope: Tensor  #: smooth cutoff envelope, [E, 1]


def neighbor_slots(center: Tensor, num_nodes: int, count: Optional[Tensor] = None,
                   max_neighbors: Optional[int] = None) -> Tuple[Tensor, int]:
    """Rank of each edge among the edges of its centre atom (any edge order),
    as a flat index ``center * K + rank`` into an [N, K] padded layout.
    ``count`` (edges per centre) and ``max_neighbors`` (its maximum, a host
    sync) are computed unless given."""
    if count is None:
        count = torch.bincount(center, minlength=num_nodes)
    if max_neighbors is None:
        max_neighbors = int(count.max()) if center.numel() > 0 else 0
    sorted_center, order = torch.sort(center, stable=True)
    first = torch.cumsum(count, 0) - count
    sorted_rank = (torch.arange(center.numel(), device=center.device)
                   - first.index_select(0, sorted_center))
    rank = torch.empty_like(center).scatter_(0, order, sorted_rank)
    return center * max_neighbors + rank, max_neighbors


class EdgeEmbedding(torch.nn.Module):
    r"""Embeds each edge :math:`j \to i` by the direction and length of
    :math:`\mathbf{r}_{ij} = \mathbf{p}_j - \mathbf{p}_i`: real spherical
    harmonics :math:`Y^{(l)}(\hat{\mathbf{r}}_{ij})` for
    :math:`l = 0, \dots, l_\mathrm{max}` (e3nn's, :obj:`"component"`
    normalisation) multiplied by a :class:`PolynomialCutoff` envelope, and a
    :class:`BesselBasis` of :math:`|\mathbf{r}_{ij}|`. A model computes these
    once per forward and shares them across its layers.

    Args:
        cutoff (float): The cutoff radius in Angstrom.
        lmax (int, optional): The largest spherical-harmonic degree.
            (default: :obj:`2`)
        num_basis (int, optional): The number of radial basis functions.
            (default: :obj:`8`)

    Shapes:
        - **input:** pos :math:`(|\mathcal{V}|, 3)`, edge_index :math:`(2, |\mathcal{E}|)`
        - **output:** :class:`EdgeFeatures` with sh_dense
          :math:`(|\mathcal{V}|, K, (l_\mathrm{max}+1)^2)`, slot :math:`(|\mathcal{E}|)`,
          basis :math:`(|\mathcal{E}|, N)` and envelope :math:`(|\mathcal{E}|, 1)`
    """

    def __init__(self, cutoff: float, lmax: int = 2, num_basis: int = 8):
        super().__init__()
        self.cutoff = float(cutoff)
        self.lmax = int(lmax)
        self.sh_irreps = o3.Irreps.spherical_harmonics(self.lmax)
        self.spherical_harmonics = SphericalHarmonics(self.lmax)
        self.radial_basis = BesselBasis(cutoff, num_basis)
        self.envelope = PolynomialCutoff(cutoff)

    def reset_parameters(self) -> None:
        self.radial_basis.reset_parameters()

    def forward(self, pos: Tensor, edge_index: Tensor) -> EdgeFeatures:
        num_nodes = pos.size(0)
        vec = pos.index_select(0, edge_index[0]) - pos.index_select(0, edge_index[1])
        length = vec.norm(dim=-1)
        center = edge_index[1]
        # Edges per centre without bincount, which reads its input's maximum
        # back to the host on a GPU.
        count = center.new_zeros(num_nodes).index_add_(0, center,
                                                       center.new_ones(()).expand_as(center))
        max_neighbors = 0
        if center.numel() > 0:
            if is_tracing():
                max_neighbors = int(count.max())
            else:
                # The padding width and the zero-length check in one host sync.
                max_neighbors, positive = torch.stack(
                    [count.max(), (length > 0).all().long()]).tolist()
                if not positive:
                    check_edge_lengths(length, edge_index)
        envelope = self.envelope(length)
        sh = self.spherical_harmonics(vec, length) * envelope
        slot, max_neighbors = neighbor_slots(center, num_nodes, count, max_neighbors)
        sh_dense = sh.new_zeros(num_nodes * max_neighbors, sh.size(1)).index_copy(0, slot, sh)
        return EdgeFeatures(sh_dense.reshape(num_nodes, max_neighbors, sh.size(1)), slot,
                            self.radial_basis(length), envelope)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(cutoff={self.cutoff}, lmax={self.lmax}, "
                f"num_basis={self.radial_basis.num_basis})")
