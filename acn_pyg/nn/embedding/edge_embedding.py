from typing import List, NamedTuple, Optional, Sequence, Tuple

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
    with each atom's neighbour list padded with zeros. The atoms are grouped
    into buckets by neighbour count (:func:`plan_buckets`): bucket :math:`b`
    holds :math:`n_b` atoms padded to its own largest count :math:`K_b`, an
    :math:`[n_b, K_b, (l_\mathrm{max}+1)^2]` block, and the blocks follow each
    other in ``sh_dense``; edge ``e`` sits at row ``slot[e]``. ``node_order``
    gives each atom's place in the bucket order; it is :obj:`None` when one
    bucket holds every atom in order (``slot[e] = i * K + rank``, :math:`K`
    the largest count of all). The envelope rides on the harmonics, computed
    once, rather than on every layer's radial weights: the same products,
    fewer of them.
    """
    sh_dense: Tensor  #: envelope x spherical harmonics, padded, [num_slots, (lmax + 1)^2]
    slot: Tensor      #: row of each edge in sh_dense, [E]
    basis: Tensor     #: radial basis, [E, num_basis]
    envelope: Tensor  #: smooth cutoff envelope, [E, 1]
    buckets: Tuple[Tuple[int, int], ...]  #: (atoms, padded width) of each bucket
    node_order: Optional[Tensor] = None   #: place of each atom in the bucket order, [N]


def neighbor_rank(center: Tensor, count: Tensor) -> Tensor:
    """Rank of each edge among the edges of its centre atom (any edge order);
    ``count`` holds the edges per centre."""
    sorted_center, order = torch.sort(center, stable=True)
    first = torch.cumsum(count, 0) - count
    sorted_rank = (torch.arange(center.numel(), device=center.device)
                   - first.index_select(0, sorted_center))
    return torch.empty_like(center).scatter_(0, order, sorted_rank)


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
    return center * max_neighbors + neighbor_rank(center, count), max_neighbors


def plan_buckets(num_atoms: Sequence[int], width: Sequence[int],
                 bucket_cost: float) -> List[List[int]]:
    """Groups classes of atoms into buckets. Class ``c`` holds
    ``num_atoms[c]`` atoms with at most ``width[c]`` neighbours, the classes
    ordered by neighbour count; a bucket of consecutive classes is padded to
    the width of its last one. Returns the classes of each bucket (empty
    classes go with the next bucket), choosing the grouping with the fewest
    padded slots plus ``bucket_cost`` per bucket, by dynamic programming over
    the classes."""
    classes = [c for c, n in enumerate(num_atoms) if n > 0]
    if not classes:
        return [list(range(len(num_atoms)))]
    best, first = [0.0], []  # best[j]: cheapest grouping of the first j classes
    for j, last in enumerate(classes):
        total, options = 0, []
        for i in range(j, -1, -1):
            total += num_atoms[classes[i]]
            # Ties go to the larger bucket: fewer kernels for the same slots.
            options.append((best[i] + total * width[last] + bucket_cost, i))
        cost, i = min(options)
        best.append(cost)
        first.append(i)
    ends, j = [], len(classes)
    while j > 0:
        ends.append(classes[j - 1])
        j = first[j - 1]
    ends = ends[::-1]
    ends[-1] = len(num_atoms) - 1
    return [list(range(lo + 1, hi + 1)) for lo, hi in zip([-1] + ends[:-1], ends)]


class EdgeEmbedding(torch.nn.Module):
    r"""Embeds each edge :math:`j \to i` by the direction and length of
    :math:`\mathbf{r}_{ij} = \mathbf{p}_j - \mathbf{p}_i`: real spherical
    harmonics :math:`Y^{(l)}(\hat{\mathbf{r}}_{ij})` for
    :math:`l = 0, \dots, l_\mathrm{max}` (e3nn's, :obj:`"component"`
    normalisation) multiplied by a :class:`PolynomialCutoff` envelope, and a
    :class:`BesselBasis` of :math:`|\mathbf{r}_{ij}|`. A model computes these
    once per forward and shares them across its layers.

    The harmonics are laid out per atom, each atom's neighbour list padded
    with zeros (see :class:`EdgeFeatures`), so that the sum over neighbours is
    a batched matrix product. Atoms are padded in buckets of similar
    neighbour count, so that one atom with many neighbours (a dense molecule
    among small ones) does not pad every other atom to its count: the layout
    grows with the number of edges. Molecules of similar size keep one bucket.

    Args:
        cutoff (float): The cutoff radius in Angstrom.
        lmax (int, optional): The largest spherical-harmonic degree.
            (default: :obj:`2`)
        num_basis (int, optional): The number of radial basis functions.
            (default: :obj:`8`)

    Shapes:
        - **input:** pos :math:`(|\mathcal{V}|, 3)`, edge_index :math:`(2, |\mathcal{E}|)`
        - **output:** :class:`EdgeFeatures` with sh_dense
          :math:`(\sum_b n_b K_b, (l_\mathrm{max}+1)^2)`, slot :math:`(|\mathcal{E}|)`,
          basis :math:`(|\mathcal{E}|, N)`, envelope :math:`(|\mathcal{E}|, 1)` and
          node_order :math:`(|\mathcal{V}|)` or :obj:`None`
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
        envelope = self.envelope(length)
        sh = self.spherical_harmonics(vec, length) * envelope
        buckets, bucket_of_atom = self._plan(count, length, edge_index)
        rank = neighbor_rank(center, count)
        node_order = None
        if bucket_of_atom is None:  # one bucket, the atoms in order
            slot = center * buckets[0][1] + rank
        else:
            order = torch.sort(bucket_of_atom, stable=True)[1]
            node_order = torch.empty_like(order).scatter_(
                0, order, torch.arange(num_nodes, device=order.device))
            # Per bucket: its first atom's place, its first slot, its width.
            atom0, slot0, width = [0], [0], [k for _, k in buckets]
            for n, k in buckets[:-1]:
                atom0.append(atom0[-1] + n)
                slot0.append(slot0[-1] + n * k)
            atom0, slot0, width = torch.tensor(
                [atom0, slot0, width], device=center.device).index_select(1, bucket_of_atom)
            first_slot = slot0 + (node_order - atom0) * width
            slot = first_slot.index_select(0, center) + rank
        num_slots = sum(n * k for n, k in buckets)
        sh_dense = sh.new_zeros(num_slots, sh.size(1)).index_copy(0, slot, sh)
        return EdgeFeatures(sh_dense, slot, self.radial_basis(length), envelope, buckets,
                            node_order)

    @staticmethod
    def _plan(count: Tensor, length: Tensor,
              edge_index: Tensor) -> Tuple[Tuple[Tuple[int, int], ...], Optional[Tensor]]:
        """The buckets, (atoms, width) each, and the bucket of every atom
        (:obj:`None` for one bucket of all the atoms in order); checks that
        no edge has zero length, in the same host sync."""
        num_nodes, num_edges = count.numel(), length.numel()
        if torch.compiler.is_exporting():  # the width is data: an unbacked size
            width = count.max().item()
            torch._check(width >= 0)
            return ((num_nodes, width),), None
        if num_edges == 0:
            return ((num_nodes, 0),), None
        if is_tracing():
            return ((num_nodes, int(count.max())),), None
        # Classes of neighbour count 0, 1, 2-3, 4-7, ...: frexp's exponent is
        # the bit length. (Beyond 2^24 neighbours float32 rounding may put an
        # atom one class up; each class's width is measured, so the layout
        # holds all the same.)
        num_classes = num_edges.bit_length() + 2
        cls = torch.frexp(count.float()).exponent.long()
        # Atoms and largest count per class, and whether every edge has a
        # length, in one buffer for one host sync.
        stats = count.new_zeros(2 * num_classes + 1)
        stats[:num_classes].index_add_(0, cls, count.new_ones(()).expand_as(cls))
        stats[num_classes:-1].scatter_reduce_(0, cls, count, "amax")
        stats[-1:].copy_((length > 0).all())
        stats = stats.tolist()
        if not stats[-1]:
            check_edge_lengths(length, edge_index)
        atoms, widths = stats[:num_classes], stats[num_classes:-1]
        # A bucket more costs kernels: split only where that saves as many
        # padded slots as there are edges. Molecules of similar size stay in
        # one bucket; a dense molecule among small ones gets its own.
        plan = plan_buckets(atoms, widths, bucket_cost=num_edges)
        buckets = tuple((sum(atoms[c] for c in group), max(widths[c] for c in group))
                        for group in plan)
        if len(plan) == 1:
            return buckets, None
        bucket_of_class = torch.tensor([b for b, group in enumerate(plan) for _ in group],
                                       device=count.device)
        return buckets, bucket_of_class.index_select(0, cls)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(cutoff={self.cutoff}, lmax={self.lmax}, "
                f"num_basis={self.radial_basis.num_basis})")
