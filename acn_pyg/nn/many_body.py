from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from acn_pyg.graph import radius_graph
from acn_pyg.nn.embedding.cutoff import PolynomialCutoff
from acn_pyg.utils.checks import (check_batch, check_edge_lengths, check_pos, check_same_device,
                                  check_z, is_tracing)
from acn_pyg.utils.ranges import expand_ranges

MANY_BODY_TERMS = ("coulomb", "london", "atm")
#: Default of :obj:`ManyBodyTerms(chunk_size=...)`: the most atom pairs, and
#: the most atom triples, whose terms are held in memory at once.
CHUNK_SIZE = 2 ** 19


def signed_log1p(x: Tensor) -> Tensor:
    r""":math:`\mathrm{sign}(x) \log(1 + |x|)`: smooth, odd, strictly
    increasing, the identity near zero and logarithmic for large :math:`|x|`."""
    return torch.sign(x) * torch.log1p(x.abs())


class ManyBodyTerms(torch.nn.Module):
    r"""Invariant many-body atom descriptors of the original AtomCloudNet:
    per-atom sums of two-body and three-body interactions (positions in
    Angstrom, :math:`Z` the atomic number):

    .. math::
        \mathrm{coulomb}_i &= \sum_{j \neq i} \frac{Z_i Z_j}{R_{ij}}\, f_{ij} \\
        \mathrm{london}_i &= \sum_{j \neq i} \frac{Z_i Z_j}{R_{ij}^6}\, f_{ij} \\
        \mathrm{atm}_i &= \sum_{\{j, k\},\, j \neq k \neq i}
            \frac{Z_i Z_j Z_k \,(1 + \cos a \cos b \cos c)}{(R_{ij} R_{jk} R_{ki})^3}
            \, f_{ij} f_{ik}

    with :math:`a, b, c` the interior angles of the triangle :math:`i, j, k`
    (Axilrod-Teller-Muto) and :math:`f` the smooth
    :class:`~acn_pyg.nn.PolynomialCutoff` envelope when :obj:`cutoff` is set
    (:math:`f \equiv 1` and sums over the whole molecule otherwise). With a
    cutoff, the cost is linear in the number of atoms; over whole molecules
    it is cubic in the atoms of a molecule. The sums are differentiable with
    respect to positions, so forces stay exact.

    Pairs and triples are handled in chunks of at most :obj:`chunk_size`
    (plus the pairs of one atom, or the triples of one pair), so memory stays
    bounded for molecules of any size; a sum that takes several chunks is
    recomputed chunk by chunk in the backward pass instead of being stored.
    Each cosine and each inverse distance is formed on its own, so the terms
    stay finite for any distances whose squares are finite. Two atoms at the
    same position (within the cutoff, in one molecule) raise a
    :class:`ValueError`, as in :class:`~acn_pyg.nn.AtomCloudConv`.

    With :obj:`normalize=True` every raw sum :math:`s` becomes
    :math:`\mathrm{sign}(s) \log(1 + |s|)` (:func:`signed_log1p`): smooth,
    monotone, and it brings Coulomb sums of hundreds and London sums near
    one to comparable scales.

    Args:
        terms (tuple of str, optional): Which terms, in output order, from
            :obj:`"coulomb"`, :obj:`"london"`, :obj:`"atm"`.
            (default: :obj:`("coulomb", "london", "atm")`)
        cutoff (float, optional): Cutoff radius in Angstrom. (default: :obj:`None`)
        normalize (bool, optional): Apply :func:`signed_log1p`. (default: :obj:`True`)
        chunk_size (int, optional): The most atom pairs, and the most atom
            triples, handled at once. (default: :data:`CHUNK_SIZE`, :math:`2^{19}`)

    Shapes:
        - **input:** atomic numbers :math:`(|\mathcal{V}|)`, positions
          :math:`(|\mathcal{V}|, 3)`, batch :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, \mathrm{len(terms)})`
    """

    def __init__(self, terms: Sequence[str] = MANY_BODY_TERMS, cutoff: Optional[float] = None,
                 normalize: bool = True, chunk_size: int = CHUNK_SIZE):
        super().__init__()
        if isinstance(terms, str):
            terms = (terms,)
        terms = tuple(terms)
        unknown = [t for t in terms if t not in MANY_BODY_TERMS]
        if not terms or unknown or len(set(terms)) != len(terms):
            raise ValueError(
                f"'terms' must be distinct names from {MANY_BODY_TERMS} (got {terms!r})")
        if cutoff is not None and not cutoff > 0:
            raise ValueError(f"'cutoff' must be None or positive (got {cutoff!r})")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"'chunk_size' must be a positive int (got {chunk_size!r})")
        self.terms: Tuple[str, ...] = terms
        self.cutoff = None if cutoff is None else float(cutoff)
        self.normalize = normalize
        self.chunk_size = chunk_size
        self.envelope = PolynomialCutoff(cutoff) if cutoff is not None else None

    @property
    def num_features(self) -> int:
        return len(self.terms)

    def forward(self, z: Tensor, pos: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        if not is_tracing():
            check_same_device(z=z, pos=pos, batch=batch)
            check_z(z)
            check_pos(pos)
            if z.numel() != pos.size(0):
                raise ValueError(f"'z' has {z.numel()} atoms but 'pos' has {pos.size(0)}")
            check_batch(batch, pos.size(0))
        num_atoms = pos.size(0)
        if self.cutoff is None:
            pairs = _WholeMolecules(num_atoms, batch, pos.device)
        else:
            pairs = _Graph(radius_graph(pos, self.cutoff, batch), num_atoms)
        zf = z.to(pos.dtype)
        out = pos.new_zeros(num_atoms, len(self.terms))
        blocks = _chunks(pairs.degree, self.chunk_size)
        # Several blocks: each is recomputed in the backward pass, so that
        # what autograd keeps does not grow with the number of pairs.
        recompute = len(blocks) > 1 and torch.is_grad_enabled() and pos.requires_grad
        for block in blocks:
            part = (checkpoint(self._block, zf, pos, pairs, block, use_reentrant=False)
                    if recompute else self._block(zf, pos, pairs, block))
            out = out.index_add(0, pairs.order[block[0]:block[1]], part)
        return signed_log1p(out) if self.normalize else out

    def _block(self, zf: Tensor, pos: Tensor, pairs, block: Tuple[int, int, int, int]) -> Tensor:
        """The sums of the centres :obj:`block[0]:block[1]` (in
        :obj:`pairs.order`), shape :obj:`[block[1] - block[0], len(terms)]`."""
        j, i, centre, rank, degree = pairs.edges(*block)
        num_centres = block[1] - block[0]
        # index_select rather than advanced indexing: faster on CPU.
        vec = pos.index_select(0, j) - pos.index_select(0, i)
        dist2 = vec.pow(2).sum(-1)
        dist = dist2.sqrt()
        if not is_tracing():
            check_edge_lengths(dist, torch.stack([j, i]))
        # zz = Z_i Z_j f_ij and zj = Z_j f_ij, with f the envelope.
        zj = zf.index_select(0, j)
        zz = zf.index_select(0, i) * zj
        if self.envelope is not None:
            weight = self.envelope(dist).squeeze(-1)
            zz, zj = zz * weight, zj * weight
        out = []
        for term in self.terms:
            if term == "coulomb":
                pair = zz / dist
            elif term == "london":
                pair = zz / dist2.pow(3)
            else:
                out.append(self._atm(zz, zj, vec, dist2, dist, centre, rank, degree,
                                     num_centres))
                continue
            out.append(pos.new_zeros(num_centres).index_add(0, centre, pair))
        return torch.stack(out, dim=-1)

    def _atm(self, zz: Tensor, zj: Tensor, vec: Tensor, dist2: Tensor, dist: Tensor,
             centre: Tensor, rank: Tensor, degree: Tensor, num_centres: int) -> Tensor:
        # Unordered pairs of edges (i <- j, i <- k) sharing the centre i, j < k:
        # the edge of rank r among its centre's pairs with those of rank > r.
        partners = degree - 1 - rank
        # The factors of a triple that depend on one edge alone: Z_i Z_j f_ij / R_ij^3
        # of its first edge, Z_k f_ik / R_ik^3 of its second.
        inv = dist.reciprocal()
        inv3 = inv.pow(3)
        first, second = zz * inv3, zj * inv3
        chunks = _chunks(partners, self.chunk_size)
        recompute = len(chunks) > 1 and torch.is_grad_enabled() and vec.requires_grad
        out = dist.new_zeros(num_centres)
        for chunk in chunks:
            args = (first, second, vec, dist2, inv, centre, partners, chunk, num_centres)
            out = out + (checkpoint(_atm_sums, *args, use_reentrant=False) if recompute
                         else _atm_sums(*args))
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(terms={self.terms}, cutoff={self.cutoff}, "
                f"normalize={self.normalize}, chunk_size={self.chunk_size})")


def _atm_sums(first: Tensor, second: Tensor, vec: Tensor, dist2: Tensor, inv: Tensor,
              centre: Tensor, partners: Tensor, chunk: Tuple[int, int, int, int],
              num_centres: int) -> Tensor:
    """The Axilrod-Teller-Muto sums of the triples of the edges
    :obj:`chunk[0]:chunk[1]` (i <- j) with their partners (i <- k), per
    centre. The triples are made here, so that a recomputed chunk keeps
    nothing of their size for the backward pass."""
    start, end, begin, stop = chunk
    e1, within = expand_ranges(partners[start:end], stop - begin)
    e1 = e1 + start
    e2 = e1 + 1 + within
    d_ij, d_ik = dist2.index_select(0, e1), dist2.index_select(0, e2)
    inv_ij, inv_ik = inv.index_select(0, e1), inv.index_select(0, e2)
    d_jk = (vec.index_select(0, e2) - vec.index_select(0, e1)).pow(2).sum(-1)
    inv_jk = d_jk.rsqrt()
    # Twice the cosines of the interior angles (law of cosines), each bounded
    # on its own, so that long distances cannot overflow their product.
    c_i = (d_ij + d_ik - d_jk) * (inv_ij * inv_ik)
    c_j = (d_ij + d_jk - d_ik) * (inv_ij * inv_jk)
    c_k = (d_ik + d_jk - d_ij) * (inv_ik * inv_jk)
    triple = (first.index_select(0, e1) * second.index_select(0, e2) * inv_jk.pow(3)
              * (1.0 + 0.125 * c_i * c_j * c_k))
    return dist2.new_zeros(num_centres).index_add(0, centre.index_select(0, e1), triple)


def _chunks(sizes: Tensor, chunk_size: int) -> List[Tuple[int, int, int, int]]:
    """Consecutive ranges :obj:`(start, end, begin, stop)` of the items of
    :obj:`sizes` whose sizes sum to at most :obj:`chunk_size` plus the size
    of one item; :obj:`begin` and :obj:`stop` are the sums of the sizes before
    :obj:`start` and before :obj:`end`. One host sync for a single range,
    two for several."""
    if sizes.numel() == 0:
        return []
    total = sizes.sum()
    cum = sizes.cumsum(0) - sizes
    if int(total) <= chunk_size:
        return [(0, sizes.numel(), 0, int(total))]
    _, count = torch.unique_consecutive(torch.div(cum, chunk_size, rounding_mode="floor"),
                                        return_counts=True)
    ends = count.cumsum(0)
    bounds = torch.cat([cum.index_select(0, ends[:-1]), total.view(1)])
    ends, bounds = ends.tolist(), [0] + bounds.tolist()
    starts = [0] + ends[:-1]
    return list(zip(starts, ends, bounds[:-1], bounds[1:]))


class _WholeMolecules:
    """Every pair of atoms of each molecule, made chunk by chunk: the pairs of
    the centres :obj:`order[start:end]`, never the whole list at once."""

    def __init__(self, num_atoms: int, batch: Optional[Tensor], device: torch.device):
        if batch is None:
            batch = torch.zeros(num_atoms, dtype=torch.long, device=device)
        self.batch, self.order = torch.sort(batch.long(), stable=True)
        count = torch.bincount(self.batch)
        self.first = torch.cumsum(count, 0) - count
        #: Pairs of each centre, in :obj:`order`.
        self.degree = count.index_select(0, self.batch) - 1

    def edges(self, start: int, end: int, begin: int, stop: int):
        """:obj:`(j, i, centre, rank, degree)` of each pair of the centres
        :obj:`order[start:end]`: neighbour and centre atoms, the centre's
        position in the block, the pair's rank among its centre's pairs, and
        the centre's number of pairs."""
        degree = self.degree[start:end]
        centre, rank = expand_ranges(degree, stop - begin)
        at = centre + start
        first = self.first.index_select(0, self.batch.index_select(0, at))
        neighbour = first + rank + (rank >= at - first).long()
        return (self.order.index_select(0, neighbour), self.order.index_select(0, at), centre,
                rank, degree.index_select(0, centre))


class _Graph:
    """The pairs of an :obj:`edge_index` sorted by centre, chunk by chunk."""

    def __init__(self, edge_index: Tensor, num_atoms: int):
        self.edge_index = edge_index
        self.order = torch.arange(num_atoms, device=edge_index.device)
        self.degree = torch.bincount(edge_index[1], minlength=num_atoms)
        self.first = torch.cumsum(self.degree, 0) - self.degree

    def edges(self, start: int, end: int, begin: int, stop: int):
        """As :meth:`_WholeMolecules.edges`."""
        j, i = self.edge_index[:, begin:stop]
        rank = torch.arange(begin, stop, device=i.device) - self.first.index_select(0, i)
        return j, i, i - start, rank, self.degree.index_select(0, i)
