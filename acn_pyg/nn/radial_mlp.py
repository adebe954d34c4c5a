import torch
from torch import Tensor


class RadialMLP(torch.nn.Module):
    r"""Maps the radial basis of each edge to its tensor-product weights:

    .. math::
        \mathbf{w}_{ij} = \mathbf{W}_2\, \mathrm{SiLU}(\mathbf{W}_1 \mathbf{e}(r_{ij})
        + \mathbf{b}_1) + \mathbf{b}_2 .

    Args:
        num_basis (int): Size of the radial basis.
        hidden_channels (int): Width of the hidden layer.
        out_channels (int): Number of weights per edge.

    Shapes:
        - **input:** :math:`(|\mathcal{E}|, \mathrm{num\_basis})`
        - **output:** :math:`(|\mathcal{E}|, \mathrm{out\_channels})`
    """

    def __init__(self, num_basis: int, hidden_channels: int, out_channels: int):
        super().__init__()
        self.num_basis = num_basis
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.lin1 = torch.nn.Linear(num_basis, hidden_channels)
        self.lin2 = torch.nn.Linear(hidden_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()

    def forward(self, basis: Tensor) -> Tensor:
        return self.lin2(torch.nn.functional.silu(self.lin1(basis)))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_basis} -> {self.hidden_channels} -> "
                f"{self.out_channels})")
