r"""Loss terms of a training step. The loop adds them up:

.. math::
    \mathcal{L} = \mathcal{L}_\mathrm{target} + \sum_k w_k \mathcal{L}_k,

where :math:`\mathcal{L}_\mathrm{target}` is :func:`target_loss` and each
auxiliary term (:class:`DenoisingLoss`) carries its own weight."""
import torch
from torch import Tensor

from acn_pyg.nn.denoising_head import DenoisingHead, centered_noise, denoising_loss


def target_loss(pred: Tensor, target: Tensor, std: float) -> Tensor:
    r"""Mean absolute error in units of the target's standard deviation,
    :math:`\frac{1}{|\mathcal{G}|} \sum_g |\hat{y}_g - y_g| / \sigma`."""
    return (pred - target).abs().mean() / std


class DenoisingLoss(torch.nn.Module):
    r"""Denoising as an auxiliary task (Noisy Nodes, Godwin et al., 2022):
    the model also sees positions displaced by centred Gaussian noise,
    :math:`\tilde{\mathbf{p}}_i = \mathbf{p}_i + \sigma \boldsymbol{\epsilon}_i`,
    and a :class:`~acn_pyg.nn.DenoisingHead` on its atom features predicts
    :math:`\boldsymbol{\epsilon}_i`; the term is
    :math:`w \cdot \mathrm{MSE}(\hat{\boldsymbol{\epsilon}}, \boldsymbol{\epsilon})`.
    The target is trained on the true positions only.

    Args:
        hidden_channels (int): Atom features of the model
            (:meth:`AtomCloudNet.atom_features`).
        cutoff (float): The model's cutoff in Angstrom; the head reuses the
            model's graph of the displaced positions.
        sigma (float, optional): Noise standard deviation in Angstrom.
            (default: :obj:`0.1`)
        weight (float, optional): The weight :math:`w`. (default: :obj:`1.0`)
    """

    def __init__(self, hidden_channels: int, cutoff: float, sigma: float = 0.1,
                 weight: float = 1.0):
        super().__init__()
        self.sigma = sigma
        self.weight = weight
        self.head = DenoisingHead(hidden_channels, cutoff=cutoff)

    def forward(self, model: torch.nn.Module, data) -> Tensor:
        """The unweighted loss on a batch :obj:`data` (with :obj:`z`,
        :obj:`pos`, :obj:`batch`) for :obj:`model`, an
        :class:`~acn_pyg.models.AtomCloudNet`."""
        noise = centered_noise(data.pos, data.batch, num_graphs=data.num_graphs)
        noisy = data.pos + self.sigma * noise
        features, edge_index = model.atom_features(data.z, noisy, data.batch)
        return denoising_loss(self.head(features, noisy, data.batch, edge_index), noise)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(sigma={self.sigma}, weight={self.weight})"
