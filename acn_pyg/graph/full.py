from typing import Optional

import torch
from torch import Tensor

from acn_pyg.utils.ranges import expand_ranges


@torch.compiler.disable
def full_graph(num_nodes: int, batch: Optional[Tensor] = None, loop: bool = False,
               device: Optional[torch.device] = None) -> Tensor:
    r"""Every pair of atoms of the same graph, as :obj:`edge_index`
    :math:`(2, \sum_G |G|^2 - |G|)` (row 0 the neighbour :math:`j`, row 1 the
    centre :math:`i`), sorted by centre then neighbour. Vectorised; the batch
    vector need not be sorted.

    Args:
        num_nodes (int): Number of atoms.
        batch (torch.Tensor, optional): Graph index of every atom.
            (default: :obj:`None`, one graph)
        loop (bool, optional): If :obj:`True`, includes :math:`(i, i)`.
            (default: :obj:`False`)
        device (torch.device, optional): Device when :obj:`batch` is
            :obj:`None`. (default: :obj:`None`)
    """
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=device)
    if num_nodes == 0:
        return torch.empty(2, 0, dtype=torch.long, device=batch.device)
    batch, perm = torch.sort(batch.long(), stable=True)
    count = torch.bincount(batch)
    first = torch.cumsum(count, 0) - count
    per_atom = count.index_select(0, batch)
    centre, within = expand_ranges(per_atom)
    neighbour = first.index_select(0, batch).index_select(0, centre) + within
    if not loop:
        keep = neighbour != centre
        centre, neighbour = centre[keep], neighbour[keep]
    i, j = perm.index_select(0, centre), perm.index_select(0, neighbour)
    order = torch.argsort(i * num_nodes + j)
    return torch.stack([j.index_select(0, order), i.index_select(0, order)])
