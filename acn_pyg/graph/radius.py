r"""Radius graphs of atoms: :obj:`torch_cluster` when importable, pure PyTorch otherwise.

Both back ends return the same edges in the same order, so a model gives the
same numbers with or without the compiled extension.
"""
import itertools
import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor

from acn_pyg.utils.checks import check_batch, check_pos, check_same_device, is_tracing
from acn_pyg.utils.ranges import expand_ranges

try:
    import torch_cluster
    HAS_TORCH_CLUSTER = True
except ImportError:  # pragma: no cover - depends on the install
    torch_cluster = None
    HAS_TORCH_CLUSTER = False

#: Upper bound on candidate pairs held in memory at once by the pure-PyTorch
#: cell list (about 100 MB of indices and distances).
MAX_CANDIDATE_PAIRS = 1 << 22
#: From this many atoms on, torch_cluster gets the atoms in spatial order.
SPATIAL_SORT_MIN_ATOMS = 4096

_NEIGHBOR_OFFSETS = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.long)

_warned_truncation = False


# Graph construction is data-dependent and calls custom ops without fake
# kernels; under torch.compile it runs eagerly and the model around it compiles.
@torch.compiler.disable
def radius_graph(
    pos: Tensor,
    r: float,
    batch: Optional[Tensor] = None,
    loop: bool = False,
    max_num_neighbors: Optional[int] = None,
    backend: str = "auto",
    batch_size: Optional[int] = None,
    check_inputs: bool = True,
) -> Tensor:
    r"""All pairs of atoms of the same graph closer than :obj:`r`.

    .. math::
        \mathcal{E} = \{ (j, i) : \mathrm{batch}_j = \mathrm{batch}_i,\;
        \| \mathbf{p}_j - \mathbf{p}_i \| < r,\; j \neq i \}

    Args:
        pos (torch.Tensor): Atom positions.
        r (float): The cutoff radius.
        batch (torch.Tensor, optional): Graph index of every atom; edges never
            join two graphs. Need not be sorted. (default: :obj:`None`)
        loop (bool, optional): If :obj:`True`, adds self-loops
            :math:`(i, i)`. (default: :obj:`False`)
        max_num_neighbors (int, optional): If set, each centre keeps only its
            :obj:`max_num_neighbors` nearest neighbours (ties broken by index)
            and a warning is issued once when that drops any edge.
            :obj:`None` keeps every neighbour. (default: :obj:`None`)
        backend (str, optional): :obj:`"torch_cluster"`, :obj:`"torch"` (pure
            PyTorch cell list, linear in the number of atoms, memory bounded
            by :data:`MAX_CANDIDATE_PAIRS`) or :obj:`"auto"` (the first when
            importable and built for the device of :obj:`pos`).
            (default: :obj:`"auto"`)
        batch_size (int, optional): The number of graphs,
            :obj:`batch.max() + 1`, if the caller knows it: spares the
            pure-PyTorch back end a host sync. (default: :obj:`None`)
        check_inputs (bool, optional): If :obj:`False`, :obj:`pos` and
            :obj:`batch` are trusted (a model that checked them already
            spares two host syncs). (default: :obj:`True`)

    Returns:
        :obj:`edge_index` of shape :math:`[2, |\mathcal{E}|]` in PyG's
        source-to-target convention: row 0 holds the neighbour :math:`j`, row 1
        the centre :math:`i`. Edges are sorted by centre, then neighbour.

    Shapes:
        - **pos:** :math:`(|\mathcal{V}|, 3)`
        - **batch:** :math:`(|\mathcal{V}|)`
        - **output:** :math:`(2, |\mathcal{E}|)`
    """
    if check_inputs and not is_tracing():
        check_same_device(pos=pos, batch=batch)
        check_pos(pos)
        check_batch(batch, pos.size(0))
        if not isinstance(r, (int, float)) or not r > 0:
            raise ValueError(f"'r' must be a positive number (got {r!r})")
        if max_num_neighbors is not None and (
                not isinstance(max_num_neighbors, int) or max_num_neighbors < 1):
            raise ValueError(
                f"'max_num_neighbors' must be None or a positive int (got {max_num_neighbors!r})")
    if backend not in ("auto", "torch", "torch_cluster"):
        raise ValueError(f"'backend' must be 'auto', 'torch' or 'torch_cluster' (got {backend!r})")
    if backend == "torch_cluster" and not HAS_TORCH_CLUSTER:
        raise ValueError("backend='torch_cluster' was asked for but torch_cluster is not installed")

    num_atoms = pos.size(0)
    if num_atoms == 0:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    if batch is None:
        batch = torch.zeros(num_atoms, dtype=torch.long, device=pos.device)
    batch = batch.long()

    if backend == "torch_cluster" or (backend == "auto" and _torch_cluster_runs_on(pos.device)):
        edge_index = _radius_graph_torch_cluster(pos, r, batch, loop)
    else:
        edge_index = _radius_graph_cell_list(pos, r, batch, loop, batch_size)
    edge_index = _sort_edges(edge_index, num_atoms)
    if max_num_neighbors is not None:
        edge_index = _keep_nearest(edge_index, pos, max_num_neighbors)
    return edge_index


def _torch_cluster_runs_on(device: torch.device) -> bool:
    # A CPU-only build of torch_cluster cannot take CUDA tensors.
    if not HAS_TORCH_CLUSTER:
        return False
    return device.type == "cpu" or (device.type == "cuda"
                                    and torch.ops.torch_cluster.cuda_version() != -1)


def _radius_graph_torch_cluster(pos: Tensor, r: float, batch: Tensor, loop: bool) -> Tensor:
    num_atoms = pos.size(0)
    # torch_cluster assumes a sorted batch vector: sort it stably and map back.
    # Large systems are also put in spatial (cell) order within each graph,
    # which keeps torch_cluster's tree queries cache-friendly (in random order
    # their cost per edge grows with the system).
    perm = None
    if num_atoms >= SPATIAL_SORT_MIN_ATOMS:
        cell, num_cells = _order_cells(pos, r)
        perm = torch.argsort(batch * num_cells + cell, stable=True)
    elif num_atoms > 1 and bool((batch[1:] < batch[:-1]).any()):
        perm = torch.sort(batch, stable=True).indices
    if perm is not None:
        batch, pos = batch[perm], pos[perm]
    # A neighbour limit equal to the number of atoms means no limit.
    edge_index = torch_cluster.radius_graph(
        pos, r, batch=batch, loop=loop, max_num_neighbors=num_atoms,
        flow="source_to_target")
    if perm is not None:
        edge_index = perm[edge_index]
    return edge_index


def _order_cells(pos: Tensor, r: float) -> Tuple[Tensor, int]:
    """A cell index per atom on a grid of cells of side :obj:`r` (coarsened
    to at most 1024 per side), and the number of cells: sorting atoms by it
    puts near atoms near each other in memory."""
    lower = pos.min(dim=0).values
    extent = float((pos.max(dim=0).values - lower).max())
    side = max(float(r), extent / 1023.0)
    dims = int(extent / side) + 1
    cell = ((pos - lower) / side).floor().long().clamp_(0, dims - 1)
    return (cell[:, 0] * dims + cell[:, 1]) * dims + cell[:, 2], dims ** 3


def _radius_graph_cell_list(pos: Tensor, r: float, batch: Tensor, loop: bool,
                            num_graphs: Optional[int] = None) -> Tensor:
    """Cell list: bins of side ``r`` keyed by (graph, cell); each atom looks in 27 bins."""
    num_atoms, device = pos.size(0), pos.device
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1
    pos_d = pos.detach()
    lower = torch.full((num_graphs, 3), float("inf"), dtype=pos.dtype, device=device)
    lower = lower.scatter_reduce(0, batch.unsqueeze(-1).expand(-1, 3), pos_d, "amin")
    # Cells start at 1 so that every neighbouring cell index stays >= 0.
    cell = torch.floor((pos_d - lower[batch]) / r).long() + 1
    dims = cell.max(dim=0).values + 2
    dx, dy, dz = dims.tolist()  # one host sync
    if num_graphs * dx * dy * dz >= (1 << 62):
        raise ValueError(
            "'pos' spans too many cells of size r for the pure-PyTorch radius graph; "
            "install torch_cluster or split the system into graphs")
    strides = torch.tensor([dy * dz, dz, 1], dtype=torch.long, device=device)
    key = batch * (dx * dy * dz) + (cell * strides).sum(-1)
    sorted_key, order = torch.sort(key)

    neighbor_key = key.unsqueeze(1) + (_NEIGHBOR_OFFSETS.to(device) * strides).sum(-1)
    start = torch.searchsorted(sorted_key, neighbor_key)
    count = torch.searchsorted(sorted_key, neighbor_key, right=True) - start
    per_atom = count.sum(dim=1)

    # Chunks of centres whose candidate pairs fit in MAX_CANDIDATE_PAIRS.
    # A chunk ends before the first centre whose cumulative count exceeds the budget.
    cum = torch.cumsum(per_atom, 0)
    bounds = [0]
    # One host sync when all candidates fit in one chunk (small systems).
    num_candidates = int(cum[-1])
    if num_candidates <= MAX_CANDIDATE_PAIRS:
        bounds.append(num_atoms)
    while bounds[-1] < num_atoms:
        lo = bounds[-1]
        budget = (int(cum[lo - 1]) if lo > 0 else 0) + MAX_CANDIDATE_PAIRS
        end = int(torch.searchsorted(cum, torch.tensor(budget, device=device), right=True))
        bounds.append(min(max(end, lo + 1), num_atoms))

    r2 = r * r
    rows, cols = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        cnt = count[lo:hi].flatten()
        total = num_candidates if len(bounds) == 2 else int(cnt.sum())
        if total == 0:
            continue
        entry, within = expand_ranges(cnt, total)
        j = order[start[lo:hi].flatten()[entry] + within]
        i = entry // 27 + lo
        dist2 = (pos_d[j] - pos_d[i]).pow(2).sum(-1)
        keep = dist2 < r2
        if not loop:
            keep &= i != j
        kept = keep.nonzero().squeeze(1)  # one sync for both rows
        rows.append(j.index_select(0, kept))
        cols.append(i.index_select(0, kept))
    if not rows:
        return torch.empty(2, 0, dtype=torch.long, device=device)
    return torch.stack([torch.cat(rows), torch.cat(cols)])


def _sort_edges(edge_index: Tensor, num_atoms: int) -> Tensor:
    order = torch.argsort(edge_index[1] * num_atoms + edge_index[0])
    return edge_index.index_select(1, order)


def _keep_nearest(edge_index: Tensor, pos: Tensor, k: int) -> Tensor:
    """Keeps the ``k`` nearest neighbours of every centre of an edge list sorted by (i, j)."""
    global _warned_truncation
    j, i = edge_index
    dist = (pos[j] - pos[i]).detach().norm(dim=-1)
    # Stable sorts: by distance, then by centre; ties keep the (i, j) order.
    order = torch.sort(dist, stable=True).indices
    order = order[torch.sort(i[order], stable=True).indices]
    i_sorted = i[order]
    counts = torch.bincount(i_sorted, minlength=pos.size(0))
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(i_sorted.numel(), device=pos.device) - first[i_sorted]
    keep = order[rank < k]
    if keep.numel() < edge_index.size(1) and not _warned_truncation:
        _warned_truncation = True
        warnings.warn(
            f"radius_graph: max_num_neighbors={k} dropped {edge_index.size(1) - keep.numel()} "
            f"edges (kept the nearest neighbours). Truncation makes the model non-smooth; "
            f"pass max_num_neighbors=None to keep every neighbour.", stacklevel=3)
    keep = torch.sort(keep).values
    return edge_index[:, keep]


class RadiusGraph(torch.nn.Module):
    r"""Module form of :func:`radius_graph`, to pass as a model's
    :obj:`interaction_graph`: called as :obj:`graph(pos, batch)`.

    Args:
        cutoff (float): The cutoff radius in Angstrom.
        max_num_neighbors (int, optional): See :func:`radius_graph`.
            (default: :obj:`None`)
        check_inputs (bool, optional): See :func:`radius_graph`;
            :class:`~acn_pyg.models.AtomCloudNet` checks its inputs itself
            and builds its graph with :obj:`False`. (default: :obj:`True`)
    """

    def __init__(self, cutoff: float, max_num_neighbors: Optional[int] = None,
                 check_inputs: bool = True):
        super().__init__()
        self.cutoff = cutoff
        self.max_num_neighbors = max_num_neighbors
        self.check_inputs = check_inputs

    def forward(self, pos: Tensor, batch: Optional[Tensor] = None,
                batch_size: Optional[int] = None) -> Tensor:
        return radius_graph(pos, self.cutoff, batch, max_num_neighbors=self.max_num_neighbors,
                            batch_size=batch_size, check_inputs=self.check_inputs)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(cutoff={self.cutoff}, "
                f"max_num_neighbors={self.max_num_neighbors})")
