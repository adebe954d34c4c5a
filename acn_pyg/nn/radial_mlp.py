from typing import Sequence, Tuple

import torch
from torch import Tensor
from acn_pyg.nn.normalized import NormalizedLinear
from acn_pyg.utils.checks import layout_version


class RadialMLP(torch.nn.Module):
    r"""Maps the radial basis of each edge to its tensor-product weights:

    .. math::
        \mathbf{w}_{ij} = g \left( \mathbf{W}_2\, \mathrm{SiLU}(\mathbf{W}_1
        \mathbf{e}(r_{ij}) + \mathbf{b}_1) + \mathbf{b}_2 \right),

    with :class:`~torch.nn.Linear`'s default initialisation and a constant
    gain :math:`g`. A gain in the forward pass, not in the initial weights,
    scales the output without slowing the weights' relative change under an
    optimizer such as Adam.

    Args:
        num_basis (int): Size of the radial basis.
        hidden_channels (int): Width of the hidden layer.
        out_channels (int): Number of weights per edge.
        gain (float, optional): The constant :math:`g`. (default: :obj:`1.0`)
        weight_norm (bool, optional): If :obj:`True`, :math:`\mathbf{W}_1`
            and :math:`\mathbf{W}_2` are weight-normalised
            (:class:`~acn_pyg.nn.normalized.NormalizedLinear`), initialised to
            the same function. (default: :obj:`False`)

    Shapes:
        - **input:** :math:`(|\mathcal{E}|, \mathrm{num\_basis})`
        - **output:** :math:`(|\mathcal{E}|, \mathrm{out\_channels})`
    """

    def __init__(self, num_basis: int, hidden_channels: int, out_channels: int,
                 gain: float = 1.0, weight_norm: bool = False):
        super().__init__()
        if not gain > 0:
            raise ValueError(f"'gain' must be positive (got {gain})")
        self.gain = float(gain)
        self.num_basis = num_basis
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.weight_norm = weight_norm
        linear = NormalizedLinear if weight_norm else torch.nn.Linear
        self.lin1 = linear(num_basis, hidden_channels)
        self.lin2 = linear(hidden_channels, out_channels)
        self.reset_parameters()

    #: Layout of the state dict, saved in its metadata: 2 applies the gain in
    #: the forward pass; 1 (acn_pyg <= 0.3) held it in the initial weights,
    #: which are divided by the gain on loading.
    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        version = layout_version(local_metadata, self._version, prefix, "RadialMLP")
        if version is not None and version < 2 and self.gain != 1.0:
            for key in (f"{prefix}lin2.weight", f"{prefix}lin2.bias"):
                if key in state_dict:
                    state_dict[key] = state_dict[key] / self.gain
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def reset_parameters(self) -> None:
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()

    def weights(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r""":math:`\mathbf{W}_1, \mathbf{b}_1, g\mathbf{W}_2, g\mathbf{b}_2`
        as :class:`torch.nn.Linear` holds them (:obj:`[out, in]`)."""
        w1, w2 = ((self.lin1.effective_weight(), self.lin2.effective_weight())
                  if self.weight_norm else (self.lin1.weight, self.lin2.weight))
        if self.gain != 1.0:  # the gain on the (small) weights, not on the output
            return w1, self.lin1.bias, w2 * self.gain, self.lin2.bias * self.gain
        return w1, self.lin1.bias, w2, self.lin2.bias

    def forward(self, basis: Tensor) -> Tensor:
        w1, b1, w2, b2 = self.weights()
        h = torch.nn.functional.silu(torch.nn.functional.linear(basis, w1, b1))
        return torch.nn.functional.linear(h, w2, b2)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_basis} -> {self.hidden_channels} -> "
                f"{self.out_channels})")


def stacked_radial_weights(radials: Sequence[RadialMLP], basis: Tensor) -> Tuple[Tensor, ...]:
    r"""The per-edge weights :math:`\mathrm{MLP}_t(\mathbf{e})` of several
    :class:`RadialMLP` of equal shapes (one per layer of a model) from the
    same basis, computed together: the first layers as one matrix product,
    the second ones as one batched product. The same numbers as calling each
    MLP, with a fixed number of kernels instead of one set per layer; the
    parameters stay the MLPs' own.

    Args:
        radials (list of RadialMLP): MLPs with equal
            :obj:`(num_basis, hidden_channels, out_channels)`.
        basis (torch.Tensor): Radial basis :math:`(|\mathcal{E}|, \mathrm{num\_basis})`.

    Returns:
        One :math:`(|\mathcal{E}|, \mathrm{out\_channels})` tensor per MLP.
    """
    shapes = {(r.num_basis, r.hidden_channels, r.out_channels) for r in radials}
    if len(shapes) != 1:
        raise ValueError(f"stacked_radial_weights needs MLPs of one shape (got {sorted(shapes)})")
    num_edges, hidden = basis.size(0), radials[0].hidden_channels
    weights = [r.weights() for r in radials]
    w1 = torch.cat([w[0] for w in weights], dim=0)
    b1 = torch.cat([w[1] for w in weights], dim=0)
    h = torch.nn.functional.silu(torch.addmm(b1, basis, w1.t()))
    h = h.view(num_edges, len(radials), hidden).transpose(0, 1)
    w2 = torch.stack([w[2].t() for w in weights])
    b2 = torch.stack([w[3] for w in weights]).unsqueeze(1)
    return _BatchedLinear.apply(h, w2, b2).unbind(0)


class _BatchedLinear(torch.autograd.Function):
    r""":math:`\mathbf{Y}_t = \mathbf{H}_t \mathbf{W}_t + \mathbf{b}_t` for a
    stack of :math:`T` layers (:obj:`torch.baddbmm`), whose weight gradient
    :math:`\mathbf{H}_t^\top \partial\mathbf{Y}_t` is taken as :math:`T`
    matrix products instead of one batched product.

    That gradient sums over the edges (:math:`K = |\mathcal{E}|`, tens of
    thousands) into a small :math:`(\mathrm{hidden}, \mathrm{out})` matrix.
    cuBLAS runs a batched product of that shape as a handful of thread blocks
    each walking all edges, at the end of the backward pass where the step
    waits for it, while a plain matrix product splits :math:`K` over the
    whole GPU. The backward is built from differentiable ops, so
    double backward (training on forces) works.
    """

    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(h, w)
        return torch.baddbmm(b, h, w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        h, w = ctx.saved_tensors
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_h = torch.bmm(grad, w.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            grad_w = torch.stack([torch.mm(h[t].t(), grad[t]) for t in range(h.size(0))])
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(1, keepdim=True)
        return grad_h, grad_w, grad_b
