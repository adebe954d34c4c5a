from typing import Optional, Tuple

import torch
from torch import Tensor


def expand_ranges(count: Tensor, total: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """For ``count[k]`` items owned by each ``k``, the owner and the position
    within its owner of every item: ``count = [2, 0, 3]`` gives owners
    ``[0, 0, 2, 2, 2]`` and positions ``[0, 1, 0, 1, 2]``. Vectorised, so
    pair lists (neighbours in cells, atoms of a molecule, triangles around an
    atom) are enumerated without Python loops. ``total``, the sum of
    ``count`` if known, spares a host sync on a GPU."""
    owner = torch.repeat_interleave(torch.arange(count.numel(), device=count.device), count,
                                    output_size=total)
    first = torch.cumsum(count, 0) - count
    within = torch.arange(owner.numel(), device=count.device) - first.index_select(0, owner)
    return owner, within
