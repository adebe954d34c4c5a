import torch
from torch import Tensor

#: The norm a weight-normalised direction starts at, relative to the weight
#: it represents (see :func:`weight_normalized`): Adam's first steps turn it
#: as they would turn the plain weight at 1 / DIRECTION_SCALE times the
#: learning rate, so 3e-4 starts like 1.5e-3, while at 3e-3 the direction
#: lengthens within a few hundred steps and its turn per step falls back.
DIRECTION_SCALE = 0.2


def weight_normalized(direction: Tensor, gain: Tensor, dim: int) -> Tensor:
    r"""The weight :math:`\mathbf{W} = g\, \mathbf{v} / \lVert \mathbf{v} \rVert`
    (weight normalisation, Salimans and Kingma, 2016), the norm taken over
    :obj:`dim` (the inputs of each output), :obj:`gain` :math:`g` one value
    per output.

    The output does not change when :math:`\mathbf{v}` is scaled, so its
    gradient is orthogonal to :math:`\mathbf{v}`: an Adam step, of about the
    learning rate :math:`\eta` per entry whatever the gradient's size, turns
    the weight by about :math:`\eta \sqrt{n} / \lVert \mathbf{v} \rVert`
    and lengthens :math:`\mathbf{v}`. A direction that starts short
    (:data:`DIRECTION_SCALE` times the weight's norm) therefore turns fast at
    first at any learning rate, and its norm grows until the turn per step is
    set by the number of steps taken more than by :math:`\eta`: the
    parametrisation adapts the step size to the learning rate."""
    # One fused kernel each way (torch.nn.utils.weight_norm's); its last
    # argument is the dimension kept.
    return torch._weight_norm(direction, gain.unsqueeze(dim), 1 - dim)


def init_normalized(weight: Tensor, gain: Tensor, dim: int) -> None:
    r"""Sets :obj:`gain` to the norms of :obj:`weight` (an initialised
    weight, which then becomes its direction) and shortens the direction to
    :data:`DIRECTION_SCALE` of them: :func:`weight_normalized` then gives
    :obj:`weight` as it was initialised."""
    with torch.no_grad():
        gain.copy_(weight.norm(dim=dim))
        weight.mul_(DIRECTION_SCALE)


class NormalizedLinear(torch.nn.Module):
    r""":class:`torch.nn.Linear` with a weight-normalised weight,

    .. math::
        \mathbf{y} = \mathrm{diag}(\mathbf{g})\, \frac{\mathbf{V}}{\lVert
        \mathbf{V} \rVert_\mathrm{rows}}\, \mathbf{x} + \mathbf{b},

    initialised to :class:`torch.nn.Linear`'s function (see
    :func:`weight_normalized` for why). A state dict of a
    :class:`torch.nn.Linear` (no :obj:`gain`) loads as the same function.

    Args:
        in_features (int): Size of each input.
        out_features (int): Size of each output.
        bias (bool, optional): Whether to learn :math:`\mathbf{b}`.
            (default: :obj:`True`)

    Shapes:
        - **input:** :math:`(*, \mathrm{in\_features})`
        - **output:** :math:`(*, \mathrm{out\_features})`
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = torch.nn.Parameter(torch.empty(out_features, in_features))
        self.gain = torch.nn.Parameter(torch.empty(out_features))
        self.bias = torch.nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        linear = torch.nn.Linear(self.in_features, self.out_features, self.bias is not None)
        with torch.no_grad():
            self.weight.copy_(linear.weight)
            if self.bias is not None:
                self.bias.copy_(linear.bias)
        init_normalized(self.weight, self.gain, 1)

    def effective_weight(self) -> Tensor:
        """The weight :math:`\\mathbf{W}` of the equivalent
        :class:`torch.nn.Linear`, :obj:`[out_features, in_features]`."""
        return weight_normalized(self.weight, self.gain, 1)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        gain_from_weight(state_dict, prefix + "weight", prefix + "gain", 1)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.effective_weight(), self.bias)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(in_features={self.in_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None})")


class NormalizedEmbedding(torch.nn.Module):
    r""":class:`torch.nn.Embedding` with weight-normalised rows,
    :math:`\mathbf{e}_z = g_z \mathbf{v}_z / \lVert \mathbf{v}_z \rVert`,
    initialised to :class:`torch.nn.Embedding`'s (:math:`\mathcal{N}(0, 1)`
    entries; see :func:`weight_normalized`). A state dict of a
    :class:`torch.nn.Embedding` loads as the same table.

    Args:
        num_embeddings (int): Number of rows.
        embedding_dim (int): Size of each row.

    Shapes:
        - **input:** indices :math:`(*)`
        - **output:** :math:`(*, \mathrm{embedding\_dim})`
    """

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = torch.nn.Parameter(torch.empty(num_embeddings, embedding_dim))
        self.gain = torch.nn.Parameter(torch.empty(num_embeddings))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.normal_()
        init_normalized(self.weight, self.gain, 1)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        gain_from_weight(state_dict, prefix + "weight", prefix + "gain", 1)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def forward(self, index: Tensor) -> Tensor:
        # The table (~100 rows) is normalised, then looked up.
        return torch.nn.functional.embedding(index, weight_normalized(self.weight, self.gain, 1))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num_embeddings}, {self.embedding_dim})"


def gain_from_weight(state_dict, weight_key: str, gain_key: str, dim: int) -> None:
    """A plain weight (saved without weight normalisation) loads as itself:
    if :obj:`state_dict` holds no :obj:`gain_key`, the norms of its
    :obj:`weight_key` over :obj:`dim` become the gains and the weight the
    direction (for a module's ``_load_from_state_dict``)."""
    if gain_key not in state_dict and weight_key in state_dict:
        state_dict[gain_key] = state_dict[weight_key].norm(dim=dim)


__all__ = ["DIRECTION_SCALE", "NormalizedEmbedding", "NormalizedLinear", "init_normalized",
           "weight_normalized"]
