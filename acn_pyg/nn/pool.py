from typing import Optional

import torch
from torch import Tensor
from torch_geometric.utils import scatter

#: Keeps the power mean differentiable where every input is zero.
POWER_MEAN_EPS = 1e-12


def global_power_mean_pool(x: Tensor, batch: Optional[Tensor], size: Optional[int] = None,
                           p: float = 2.0) -> Tensor:
    r"""Power mean over the atoms of each graph, the pooling of the original
    AtomCloudNet (:math:`p = 2`, a root mean square):

    .. math::
        \mathbf{r}_G = \left( \frac{1}{|G|} \sum_{i \in G} |\mathbf{x}_i|^p
        + \epsilon \right)^{1/p}

    Args:
        x (torch.Tensor): Node features :math:`(|\mathcal{V}|, F)`.
        batch (torch.Tensor, optional): Graph index of every node.
        size (int, optional): Number of graphs. (default: :obj:`None`)
        p (float, optional): The power. (default: :obj:`2.0`)

    Shapes:
        - **output:** :math:`(|\mathcal{G}|, F)`
    """
    if batch is None:
        batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        size = 1 if size is None else size
    mean = scatter(x.abs().pow(p), batch, dim=0, dim_size=size, reduce="mean")
    return (mean + POWER_MEAN_EPS).pow(1.0 / p)
