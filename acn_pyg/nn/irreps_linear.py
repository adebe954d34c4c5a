import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
from e3nn import o3
from torch import Tensor

from acn_pyg.nn.normalized import gain_from_weight, init_normalized, weight_normalized
from acn_pyg.utils.irreps import split_blocks
from acn_pyg.utils.checks import layout_version


class IrrepsLinear(torch.nn.Module):
    r"""Equivariant linear map between irreps: channels of equal irrep are
    mixed by a dense matrix, shared over the :math:`2l+1` components,

    .. math::
        \mathbf{y}^{(l, p)}_{v} = \sum_{k} \sum_{u} W^{(k, l,p)}_{uv}
        \mathbf{x}^{(k, l, p)}_{u} + b_v \,[l = 0,\, p = +1],
        \qquad W^{(k, l,p)}_{uv} \sim \mathcal{N}\left(0, 1 / n^{(k)}_{l,p}\right)
        \text{ at initialisation},

    with :math:`n^{(k)}_{l,p}` the number of channels of irrep :math:`(l, p)`
    in normalisation group :math:`k`. With one input (an
    :class:`~e3nn.o3.Irreps` given) this is e3nn's :class:`~e3nn.o3.Linear`
    at initialisation. e3nn keeps unit weights and multiplies by
    :math:`1/\sqrt{n}` in the forward pass; here the factor is in the
    weights, as in :class:`torch.nn.Linear`, so that an optimizer such as
    Adam, whose steps have a size set by the learning rate whatever the
    weight's scale, changes these weights at the same relative rate as a
    :class:`torch.nn.Linear`'s at the same learning rate.
    With several inputs (a list of irreps; :meth:`forward` takes the list of
    tensors, or their concatenation) the inputs of different
    :obj:`fan_in_groups` are initialised each by their own fan-in, which makes
    :math:`\mathrm{Linear}(\mathbf{a}) + \mathrm{Linear}(\mathbf{b})` one
    matrix product: the weights of all groups form one matrix per output
    irrep. Output irreps that no input irrep
    matches are zero (plus the bias for :obj:`0e`).

    Args:
        irreps_in (e3nn.o3.Irreps, str or list of them): Irreps of the input,
            or of each of several inputs.
        irreps_out (e3nn.o3.Irreps or str): Irreps of the output.
        bias (bool, optional): If :obj:`True`, scalar (:obj:`0e`) outputs get a
            learnable bias. (default: :obj:`True`)
        fan_in_groups (list of int, optional): The normalisation group of
            each input. (default: :obj:`None`, each input its own group)
        weight_norm (bool, optional): If :obj:`True`, every output channel's
            weights are :math:`g_v\, \mathbf{w}_v / \lVert \mathbf{w}_v \rVert`
            (:func:`~acn_pyg.nn.normalized.weight_normalized`; the norm over
            all inputs of that irrep), initialised to the same function.
            (default: :obj:`False`)

    Shapes:
        - **input:** :math:`(*, \dim(\mathrm{irreps\_in}))`
        - **output:** :math:`(*, \dim(\mathrm{irreps\_out}))`
    """

    def __init__(self, irreps_in: Union[str, o3.Irreps, Sequence], irreps_out,
                 bias: bool = True, fan_in_groups: Optional[Sequence[int]] = None,
                 weight_norm: bool = False):
        super().__init__()
        self.weight_norm = weight_norm
        inputs = ([o3.Irreps(g) for g in irreps_in]
                  if isinstance(irreps_in, (list, tuple)) else [o3.Irreps(irreps_in)])
        if fan_in_groups is None:
            fan_in_groups = list(range(len(inputs)))
        if len(fan_in_groups) != len(inputs):
            raise ValueError(f"'fan_in_groups' needs one group per input ({len(inputs)}), "
                             f"got {list(fan_in_groups)}")
        self.irreps_in = sum(inputs, o3.Irreps(""))
        self.irreps_out = o3.Irreps(irreps_out)
        self._input_dims = [g.dim for g in inputs]
        # Per irrep block of the (concatenated) input: its input, normalisation
        # group and start within its input.
        input_of = [k for k, g in enumerate(inputs) for _ in g]
        group_of = [fan_in_groups[k] for k in input_of]
        block_of = [b for g in inputs for b in range(len(g))]
        # Each input is cut into its irrep blocks with one split (whose
        # backward is one cat; a slice's is a zero fill and a copy).
        self._block_dims = [[mul * ir.dim for mul, ir in g] for g in inputs]
        # Per output block: (fan-in, dim, parameter index)
        self._paths: List[Tuple[int, int, int]] = []
        # Per output block, its sources: (input, block within the input, mul).
        self._input_sources: List[List[Tuple[int, int, int]]] = []
        self.weights = torch.nn.ParameterList()
        # With weight_norm: the gain g_v of every output channel, per weight.
        self.gains = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        self._bias_index: List[int] = []
        self._out_muls = [mul for mul, _ in self.irreps_out]
        self._out_dim = self.irreps_out.dim
        for mul_out, ir in self.irreps_out:
            self._input_sources.append(
                [(input_of[i], block_of[i], mul) for i, (mul, ir_in) in enumerate(self.irreps_in)
                 if ir_in == ir and mul > 0])
            fan_in = sum(mul for _, _, mul in self._input_sources[-1])
            if fan_in > 0:
                self.weights.append(torch.nn.Parameter(torch.empty(fan_in, mul_out)))
                if weight_norm:
                    self.gains.append(torch.nn.Parameter(torch.empty(mul_out)))
                # Initial std: 1 / sqrt(channels of this irrep in the row's group).
                group_fan = [0] * (max(fan_in_groups) + 1)
                for i, (mul, ir_in) in enumerate(self.irreps_in):
                    if ir_in == ir:
                        group_fan[group_of[i]] += mul
                scale = torch.cat([
                    torch.full((mul,), 1.0 / math.sqrt(group_fan[group_of[i]]))
                    for i, (mul, ir_in) in enumerate(self.irreps_in) if ir_in == ir and mul > 0])
                self.register_buffer(f"scale_{len(self.weights) - 1}", scale.unsqueeze(-1),
                                     persistent=False)
            self._paths.append((fan_in, ir.dim, len(self.weights) - 1))
            if bias and ir == o3.Irrep("0e"):
                self.biases.append(torch.nn.Parameter(torch.empty(mul_out)))
                self._bias_index.append(len(self.biases) - 1)
            else:
                self._bias_index.append(-1)
        self.reset_parameters()

    #: Layout of the state dict, saved in its metadata: 2 holds the weights
    #: with their fan-in factors; 1 (acn_pyg <= 0.3) held unit-scale weights
    #: that the forward pass multiplied by them, and is converted on loading.
    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        version = layout_version(local_metadata, self._version, prefix, "IrrepsLinear")
        if version is not None and version < 2:
            for k in range(len(self.weights)):
                key = f"{prefix}weights.{k}"
                if key in state_dict:
                    state_dict[key] = state_dict[key] * getattr(self, f"scale_{k}").to(
                        state_dict[key].device, state_dict[key].dtype)
        if self.weight_norm:  # weights saved without weight norm: the same function
            for k in range(len(self.weights)):
                gain_from_weight(state_dict, f"{prefix}weights.{k}", f"{prefix}gains.{k}", 0)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for k, w in enumerate(self.weights):
                torch.nn.init.normal_(w)
                w.mul_(getattr(self, f"scale_{k}"))
                if self.weight_norm:
                    init_normalized(w, self.gains[k], 0)
        for b in self.biases:
            torch.nn.init.zeros_(b)

    def forward(self, x: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        r"""
        Args:
            x (torch.Tensor or list of torch.Tensor): The input, or one
                tensor per input (saves concatenating them: each input is
                cut into its irrep blocks and each output joins the blocks of
                its irrep).
        """
        if isinstance(x, Tensor):
            shape = x.shape[:-1]
            x = x.reshape(-1, x.size(-1))
            pieces = split_blocks(x, self._input_dims)
        else:
            pieces = list(x)
            if len(pieces) != len(self._input_dims):
                raise ValueError(f"IrrepsLinear takes {len(self._input_dims)} inputs "
                                 f"(got {len(pieces)})")
            shape = pieces[0].shape[:-1]
            for k, (t, dim) in enumerate(zip(pieces, self._input_dims)):
                if t.shape[:-1] != shape or t.size(-1) != dim:
                    raise ValueError(f"IrrepsLinear input {k} must have shape "
                                     f"[{', '.join(map(str, shape))}, {dim}] (got {list(t.shape)})")
            pieces = [t.reshape(-1, t.size(-1)) for t in pieces]
        n = pieces[0].size(0) if pieces else 0
        blocks = [split_blocks(t, dims) for t, dims in zip(pieces, self._block_dims)]
        outs = []
        for mul_out, (fan_in, dim, w_idx), input_sources, b_idx in zip(
                self._out_muls, self._paths, self._input_sources, self._bias_index):
            bias = self.biases[b_idx] if b_idx >= 0 else None
            if fan_in == 0:
                out = pieces[0].new_zeros(n, mul_out * dim)
                if bias is not None:
                    out = out + bias
                outs.append(out)
                continue
            parts = [blocks[k][b].reshape(n, mul, dim) for k, b, mul in input_sources]
            xin = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            w = self.weights[w_idx]
            if self.weight_norm:
                w = weight_normalized(w, self.gains[w_idx], 0)
            if dim == 1:
                out = (xin.squeeze(-1) @ w if bias is None
                       else torch.addmm(bias, xin.squeeze(-1), w))
            else:  # only 0e outputs have a bias
                out = torch.einsum("nud,uv->nvd", xin, w).reshape(n, mul_out * dim)
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
        return out.reshape(*shape, self._out_dim)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out})"
