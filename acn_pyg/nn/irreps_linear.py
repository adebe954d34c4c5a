import math
from typing import List, Tuple

import torch
from e3nn import o3
from torch import Tensor


class IrrepsLinear(torch.nn.Module):
    r"""Equivariant linear map between irreps: channels of equal irrep are
    mixed by a dense matrix, shared over the :math:`2l+1` components,

    .. math::
        \mathbf{y}^{(l, p)}_{v} = \frac{1}{\sqrt{n_{l,p}}}
        \sum_{u} W^{(l,p)}_{uv} \mathbf{x}^{(l, p)}_{u} + b_v \,[l = 0,\, p = +1],

    with :math:`n_{l,p}` the number of input channels of irrep :math:`(l, p)`.
    Output irreps that no input irrep matches are zero (plus the bias for
    :obj:`0e`).

    Args:
        irreps_in (e3nn.o3.Irreps or str): Irreps of the input.
        irreps_out (e3nn.o3.Irreps or str): Irreps of the output.
        bias (bool, optional): If :obj:`True`, scalar (:obj:`0e`) outputs get a
            learnable bias. (default: :obj:`True`)

    Shapes:
        - **input:** :math:`(*, \dim(\mathrm{irreps\_in}))`
        - **output:** :math:`(*, \dim(\mathrm{irreps\_out}))`
    """

    def __init__(self, irreps_in, irreps_out, bias: bool = True):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        in_slices = self.irreps_in.slices()
        # Per output block: (input (start, mul) pairs, fan-in, dim, parameter index)
        self._paths: List[Tuple[List[Tuple[int, int]], int, int, int]] = []
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        self._bias_index: List[int] = []
        self._out_muls = [mul for mul, _ in self.irreps_out]
        self._out_dim = self.irreps_out.dim
        for mul_out, ir in self.irreps_out:
            sources = [(in_slices[i].start, mul) for i, (mul, ir_in) in enumerate(self.irreps_in)
                       if ir_in == ir and mul > 0]
            fan_in = sum(mul for _, mul in sources)
            if fan_in > 0:
                self.weights.append(torch.nn.Parameter(torch.empty(fan_in, mul_out)))
            self._paths.append((sources, fan_in, ir.dim, len(self.weights) - 1))
            if bias and ir == o3.Irrep("0e"):
                self.biases.append(torch.nn.Parameter(torch.empty(mul_out)))
                self._bias_index.append(len(self.biases) - 1)
            else:
                self._bias_index.append(-1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in self.weights:
            torch.nn.init.normal_(w)
        for b in self.biases:
            torch.nn.init.zeros_(b)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape[:-1]
        x = x.reshape(-1, x.size(-1))
        n = x.size(0)
        outs = []
        for mul_out, (sources, fan_in, dim, w_idx), b_idx in zip(
                self._out_muls, self._paths, self._bias_index):
            if fan_in == 0:
                out = x.new_zeros(n, mul_out * dim)
            else:
                parts = [x[:, s:s + mul * dim].reshape(n, mul, dim) for s, mul in sources]
                xin = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
                w = self.weights[w_idx] / math.sqrt(fan_in)
                if dim == 1:
                    out = xin.squeeze(-1) @ w
                else:
                    out = torch.einsum("nud,uv->nvd", xin, w).reshape(n, mul_out * dim)
            if b_idx >= 0:
                out = out + self.biases[b_idx]
            outs.append(out)
        return torch.cat(outs, dim=-1).reshape(*shape, self._out_dim)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out})"
