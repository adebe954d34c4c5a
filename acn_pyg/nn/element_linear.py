import torch
from e3nn import o3
from torch import Tensor

from acn_pyg.nn.irreps_linear import IrrepsLinear


class ElementLinear(torch.nn.Module):
    r"""An equivariant linear map whose matrix depends on atom attributes
    :math:`\mathbf{s}_i` (e.g. the element embedding), of rank :obj:`rank`
    in them, as the element-dependent skip connection of MACE (a tensor
    product of the features with the one-hot element):

    .. math::
        \mathbf{y}_i = \sum_{k=1}^{r} (\mathbf{P}\mathbf{s}_i)_k\,
        \mathbf{W}_k \mathbf{x}_i,

    with :math:`\mathbf{W}_k` equivariant linear maps
    (:class:`~acn_pyg.nn.IrrepsLinear`, no bias) and :math:`\mathbf{P}`
    starting at zero, so that :math:`\mathbf{y}` starts at zero. With
    :math:`r` at least the number of elements, :math:`\mathbf{y}` can give
    every element its own matrix.

    Args:
        attr_channels (int): Size of :math:`\mathbf{s}_i`.
        rank (int): :math:`r`.
        irreps_in (e3nn.o3.Irreps or str): Irreps of :math:`\mathbf{x}`.
        irreps_out (e3nn.o3.Irreps or str): Irreps of :math:`\mathbf{y}`.
        weight_norm (bool, optional): Weight-normalised :math:`\mathbf{W}_k`.
            (default: :obj:`False`)

    Shapes:
        - **input:** :math:`(|\mathcal{V}|, \dim(\mathrm{irreps\_in}))`, atom
          attributes :math:`(|\mathcal{V}|, \mathrm{attr\_channels})`
        - **output:** :math:`(|\mathcal{V}|, \dim(\mathrm{irreps\_out}))`
    """

    def __init__(self, attr_channels: int, rank: int, irreps_in, irreps_out,
                 weight_norm: bool = False):
        super().__init__()
        for name, value in (("attr_channels", attr_channels), ("rank", rank)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"'{name}' must be a positive int (got {value!r})")
        self.rank = rank
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.coefficients = torch.nn.Linear(attr_channels, rank, bias=False)
        # The r maps side by side: one product, output [n, r * dim(out)].
        self.linear = IrrepsLinear(str(self.irreps_in), self.irreps_out * rank, bias=False,
                                   weight_norm=weight_norm)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()
        torch.nn.init.zeros_(self.coefficients.weight)

    def forward(self, x: Tensor, attrs: Tensor) -> Tensor:
        y = self.linear(x).view(x.size(0), self.rank, self.irreps_out.dim)
        return (self.coefficients(attrs).unsqueeze(-1) * y).sum(dim=1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out}, "
                f"rank={self.rank})")
