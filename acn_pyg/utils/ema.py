import copy
from collections import OrderedDict
from typing import Dict

import torch
from torch import Tensor


#: Where the averaged module's entries stand in the average's state dict
#: (:class:`torch.optim.swa_utils.AveragedModel`'s layout).
PREFIX = "module."


def averaged_module_state(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The averaged module's own state dict, out of the state dict of an
    :class:`ExponentialMovingAverage` (or an ``AveragedModel``): its
    ``module.``-prefixed entries without the prefix, with their layout
    metadata where the state dict has it (PyTorch's ``_metadata``)."""
    state = OrderedDict((k[len(PREFIX):], v) for k, v in state_dict.items()
                        if k.startswith(PREFIX))
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        state._metadata = OrderedDict(("" if k == PREFIX[:-1] else k[len(PREFIX):], v)
                                      for k, v in metadata.items()
                                      if k.startswith(PREFIX) or k == PREFIX[:-1])
    return state


class ExponentialMovingAverage(torch.nn.Module):
    r"""An exponential moving average of a model's parameters,

    .. math::
        \bar{\theta}_1 = \theta_1, \qquad
        \bar{\theta}_{t+1} = \lambda\, \bar{\theta}_t + (1 - \lambda)\, \theta_{t+1},

    updated after each optimizer step (:math:`\theta_t`: the parameters after
    step :math:`t`; :math:`\lambda`: :obj:`decay`), as
    :class:`torch.optim.swa_utils.AveragedModel` with
    :func:`~torch.optim.swa_utils.get_ema_multi_avg_fn` computes it, with the
    same :meth:`state_dict` (so checkpoints of either load in the other), but
    lean enough for every step of a small model on a GPU: one fused
    :obj:`torch._foreach_lerp_` per update, no host sync (the step count is a
    Python number, kept on the CPU in the state dict), and the buffers, which
    are constants of the layers (Clebsch-Gordan matrices, cutoffs), not copied
    at every step. Parameters only: a model whose buffers change in training
    (e.g. batch-norm statistics) is refused.

    Args:
        model (torch.nn.Module): The model being trained; :attr:`module` is an
            independent copy of it that holds the average.
        decay (float): :math:`\lambda`, in :math:`(0, 1)`.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1) (got {decay})")
        stateful = [name for name, m in model.named_modules()
                    if isinstance(m, torch.nn.modules.batchnorm._NormBase)
                    and m.track_running_stats]
        if stateful:
            raise ValueError("ExponentialMovingAverage averages parameters only; these modules "
                             "update buffers in training (running statistics): "
                             + ", ".join(stateful))
        self.module = copy.deepcopy(model)
        self.decay = decay
        self.num_updates = 0
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        """Folds the current parameters of :obj:`model` into the average."""
        mine = list(self.module.parameters())
        theirs = [p.detach() for p in model.parameters()]
        if len(mine) != len(theirs):
            raise ValueError(f"model has {len(theirs)} parameters, the average {len(mine)}")
        if self.num_updates == 0:
            torch._foreach_copy_(mine, theirs)
        else:
            torch._foreach_lerp_(mine, theirs, 1.0 - self.decay)
        self.num_updates += 1

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def state_dict(self, *args, **kwargs) -> Dict[str, Tensor]:
        # AveragedModel's layout: the module's entries under "module." and the
        # number of updates as "n_averaged".
        module_state = self.module.state_dict()
        state = OrderedDict((f"{PREFIX}{k}", v) for k, v in module_state.items())
        state["n_averaged"] = torch.tensor(self.num_updates, dtype=torch.long)
        # The module's layout versions, as AveragedModel.state_dict() keeps them.
        state._metadata = OrderedDict((f"{PREFIX}{k}" if k else PREFIX[:-1], v)
                                      for k, v in module_state._metadata.items())
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        state = dict(state_dict)
        if "n_averaged" not in state:
            raise KeyError("not an average's state dict: 'n_averaged' is missing")
        self.num_updates = int(state.pop("n_averaged"))
        if strict and any(not k.startswith(PREFIX) for k in state):
            raise KeyError("unexpected keys: "
                           + ", ".join(k for k in state if not k.startswith(PREFIX)))
        return self.module.load_state_dict(averaged_module_state(state_dict), strict=strict,
                                           assign=assign)
