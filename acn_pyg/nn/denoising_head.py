r"""A per-atom vector head that predicts, from an atom's features and its
cloud, how its position was displaced: the auxiliary task of denoising
("Noisy Nodes", Godwin et al., ICLR 2022; "Pre-training via denoising",
Zaidi et al., ICLR 2023)."""
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from acn_pyg.nn.conv.atom_cloud_conv import AtomCloudConv
from acn_pyg.utils.checks import _check_batch_layout, _check_pos_layout, check_batch


class DenoisingHead(torch.nn.Module):
    r"""Predicts a vector per atom from invariant atom features
    :math:`\mathbf{a}_i` and the geometry, with one
    :class:`~acn_pyg.nn.AtomCloudConv` from :obj:`in_channels` scalars to
    one vector (:obj:`1x1o`):

    .. math::
        \hat{\boldsymbol{\epsilon}}_i = \mathbf{W} \frac{1}{\bar{n}}
        \sum_{j \in \mathcal{N}(i)} \mathrm{MLP}(\mathbf{e}(r_{ij}))\,
        f_\mathrm{cut}(r_{ij}) \odot \mathbf{a}_j\, Y^{(1)}(\hat{\mathbf{r}}_{ij})

    so the output rotates with the molecule (equivariant) and does not move
    with a translation. Trained on positions displaced by Gaussian noise,
    :math:`\tilde{\mathbf{p}}_i = \mathbf{p}_i + \sigma \boldsymbol{\epsilon}_i`,
    against :math:`\boldsymbol{\epsilon}_i` (:func:`denoising_loss`), it asks
    the model's atom features to say where each atom's equilibrium position
    is: an auxiliary task for the features a property is read from.

    Args:
        in_channels (int): Number of invariant input features per atom.
        cutoff (float, optional): Cutoff radius in Angstrom. (default:
            :obj:`5.0`)
        num_basis (int, optional): Number of radial basis functions.
            (default: :obj:`8`)
        radial_hidden (int, optional): Hidden width of the radial MLP.
            (default: :obj:`64`)
        max_num_neighbors (int, optional): Keep only the nearest
            :obj:`max_num_neighbors` neighbours. (default: :obj:`None`)
        avg_num_neighbors (float, optional): The normaliser :math:`\bar{n}`.
            (default: :obj:`16.0`)

    Shapes:
        - **input:** features :math:`(|\mathcal{V}|, \mathrm{in\_channels})`,
          positions :math:`(|\mathcal{V}|, 3)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** one vector per atom :math:`(|\mathcal{V}|, 3)`, Cartesian
          :math:`(x, y, z)` like the positions (this package's harmonics)
    """

    def __init__(self, in_channels: int, cutoff: float = 5.0, num_basis: int = 8,
                 radial_hidden: int = 64, max_num_neighbors: Optional[int] = None,
                 avg_num_neighbors: float = 16.0):
        super().__init__()
        if not (isinstance(in_channels, int) and in_channels >= 1):
            raise ValueError(f"'in_channels' must be a positive int (got {in_channels!r})")
        self.in_channels = in_channels
        self.conv = AtomCloudConv(f"{in_channels}x0e", "1x1o", cutoff=cutoff, lmax=1,
                                  num_basis=num_basis, radial_hidden=radial_hidden,
                                  max_num_neighbors=max_num_neighbors,
                                  avg_num_neighbors=avg_num_neighbors)

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, x: Tensor, pos: Tensor, batch: Optional[Tensor] = None,
                edge_index: Optional[Tensor] = None) -> Tensor:
        r"""
        Args:
            x (torch.Tensor): Invariant atom features.
            pos (torch.Tensor): Positions in Angstrom.
            batch (torch.Tensor, optional): Graph index of every atom.
            edge_index (torch.Tensor, optional): The radius graph of
                :obj:`pos` at this head's cutoff, if already built (a
                model's own, in a training step): then the inputs are
                trusted, not checked, and no graph is built. (default:
                :obj:`None`: checked, and the graph built here)
        """
        if edge_index is None:
            return self.conv(x, pos, batch)
        return self.conv.convolve(x, edge_index, self.conv.edge_embedding(pos, edge_index))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, cutoff={self.conv.cutoff})"


def centered_noise(pos: Tensor, batch: Optional[Tensor] = None,
                   generator: Optional[torch.Generator] = None,
                   num_graphs: Optional[int] = None) -> Tensor:
    r"""Standard Gaussian noise per atom and axis with each molecule's mean
    removed: a translation of a whole molecule cannot be seen by an
    invariant model, so that part of the noise could not be predicted.
    Only the shape, dtype and device of :obj:`pos` are used.

    Args:
        pos (torch.Tensor): Positions (for their shape, dtype and device).
        batch (torch.Tensor, optional): Graph index of every atom.
            (default: :obj:`None`, one graph)
        generator (torch.Generator, optional): The random generator.
            (default: :obj:`None`, PyTorch's global one)
        num_graphs (int, optional): The number of graphs, if known: then
            :obj:`batch` is trusted (its values are not checked) and no host
            sync is taken, as in a training step on a GPU. (default:
            :obj:`None`: :obj:`batch` is checked and the count read from it)

    Shapes:
        - **input:** positions :math:`(|\mathcal{V}|, 3)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, 3)`
    """
    _check_pos_layout(pos, "pos")
    if num_graphs is None:
        check_batch(batch, pos.size(0))
    elif batch is not None:
        _check_batch_layout(batch, pos.size(0), "batch")
    noise = torch.randn(pos.shape, generator=generator, dtype=pos.dtype, device=pos.device)
    if batch is None:
        return noise - noise.mean(dim=0, keepdim=True)
    mean = scatter(noise, batch, dim=0, dim_size=num_graphs, reduce="mean")
    return noise - mean.index_select(0, batch)


def denoising_loss(pred: Tensor, noise: Tensor) -> Tensor:
    r"""Mean squared error between the predicted and the true noise, per
    atom and axis, :math:`\frac{1}{3|\mathcal{V}|} \sum_i \lVert
    \hat{\boldsymbol{\epsilon}}_i - \boldsymbol{\epsilon}_i \rVert^2`,
    both :math:`(|\mathcal{V}|, 3)` in the positions' axes. Predicting zero
    gives about 1 (less the removed molecular means)."""
    if pred.dim() != 2 or pred.size(1) != 3 or pred.shape != noise.shape:
        raise ValueError(f"'pred' and 'noise' must both have shape [num_atoms, 3] "
                         f"(got {list(pred.shape)} and {list(noise.shape)})")
    return (pred - noise).pow(2).mean()
