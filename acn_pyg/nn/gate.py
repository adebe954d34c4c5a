from typing import List, Tuple

import torch
from e3nn import o3
from torch import Tensor

from acn_pyg.utils.irreps import split_blocks


class Gate(torch.nn.Module):
    r"""Gated nonlinearity (Weiler et al., 2018) as in e3nn: scalars pass
    through an activation, every other irrep channel is scaled by the sigmoid
    of its own scalar gate,

    .. math::
        \mathbf{y} = \sigma(\mathbf{s}) \oplus \bigoplus_u
        \mathrm{sigmoid}(g_u)\, \mathbf{v}_u .

    The input holds :math:`[\mathbf{s} \,|\, \mathbf{g} \,|\, \mathbf{v}]`:
    see :obj:`irreps_in`. Even scalars use SiLU, odd scalars :math:`\tanh`
    (an odd function keeps parity).

    Args:
        irreps_out (e3nn.o3.Irreps or str): Irreps of the output: scalars
            (:obj:`l = 0`) first, then the gated irreps.
        scalar_activation (bool, optional): If :obj:`False`, the scalars pass
            unchanged (:math:`\sigma` is the identity); the other irreps are
            still gated. (default: :obj:`True`)

    Shapes:
        - **input:** :math:`(*, \dim(\mathrm{irreps\_in}))`
        - **output:** :math:`(*, \dim(\mathrm{irreps\_out}))`
    """

    def __init__(self, irreps_out, scalar_activation: bool = True):
        super().__init__()
        self.irreps_out = o3.Irreps(irreps_out)
        self.scalar_activation = bool(scalar_activation)
        self.irreps_scalars = o3.Irreps([(m, ir) for m, ir in self.irreps_out if ir.l == 0])
        self.irreps_gated = o3.Irreps([(m, ir) for m, ir in self.irreps_out if ir.l > 0])
        if self.irreps_out != self.irreps_scalars + self.irreps_gated:
            raise ValueError(
                f"Gate output irreps must list scalars before l > 0 irreps (got {self.irreps_out})")
        num_gates = self.irreps_gated.num_irreps
        self.irreps_gates = o3.Irreps(f"{num_gates}x0e") if num_gates else o3.Irreps("")
        self.irreps_in = self.irreps_scalars + self.irreps_gates + self.irreps_gated
        # (start, mul, parity) of each scalar block; (mul, dim) of each gated block.
        self._scalars: List[Tuple[int, int, int]] = [
            (s.start, m, ir.p)
            for s, (m, ir) in zip(self.irreps_scalars.slices(), self.irreps_scalars)]
        self._gated: List[Tuple[int, int]] = [(m, ir.dim) for m, ir in self.irreps_gated]
        self._split = ([m for _, m, _ in self._scalars] + ([num_gates] if self._gated else [])
                       + [m * d for m, d in self._gated])

    def forward(self, x: Tensor) -> Tensor:
        # One split into [scalar blocks | gates | gated blocks] (its backward
        # is one cat; a slice's is a zero fill and a copy).
        parts = split_blocks(x, self._split)
        outs = [part if not self.scalar_activation
                else torch.nn.functional.silu(part) if p == 1 else torch.tanh(part)
                for part, (_, _, p) in zip(parts, self._scalars)]
        if self._gated:
            gates = torch.sigmoid(parts[len(self._scalars)])
            gates = split_blocks(gates, [m for m, _ in self._gated])
            for v, gate, (mul, dim) in zip(parts[len(self._scalars) + 1:], gates, self._gated):
                outs.append((v.unflatten(-1, (mul, dim)) * gate.unsqueeze(-1)).flatten(-2))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out})"
