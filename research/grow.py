"""Deepening a trained :class:`~acn_pyg.models.AtomCloudNet` (network
growing, as in Net2Net: Chen et al., ICLR 2016): the weights of a model with
fewer layers placed in a deeper one so that it computes the same function,
from where training goes on (a warm start with ``--init-from``)::

    python research/grow.py runs/qm9 --num-layers 5 --out runs/grown5.pt
    python examples/qm9.py $(python research/run_flags.py runs/qm9) --num-layers 5 \\
        --init-from runs/grown5.pt --lr 3e-4 ...

The new layers start as the identity, so the deeper model starts from the
trained model's function.
"""
import argparse
import dataclasses
import os
import re
import sys
from typing import Dict

import torch
from torch import Tensor

from acn_pyg.models import AtomCloudNet
from acn_pyg.train import EXTENSIVE_TARGETS, build_model, load_run, load_weights, run_config

_CONV = re.compile(r"^convs\.(\d+)\.(.*)$")
_GAINS = re.compile(r"^(.*)\.gains\.(\d+)$")


def _weight_of_gain(key: str):
    """The weight key of a weight-normalised gain's key (None for others)."""
    if key.endswith(".gain"):
        return key[:-len("gain")] + "weight"
    m = _GAINS.match(key)
    return f"{m.group(1)}.weights.{m.group(2)}" if m else None


def state_num_layers(state: Dict[str, Tensor]) -> int:
    """The number of AtomCloudConv layers whose weights :obj:`state` (an
    AtomCloudNet state dict) holds: ``convs.0``, ``convs.1``, ..., with none
    missing."""
    layers = sorted({int(m.group(1)) for m in map(_CONV.match, state) if m})
    if layers != list(range(len(layers))):
        raise ValueError(f"the state dict must hold the layers convs.0, convs.1, ... of an "
                         f"AtomCloudNet (got layers {layers})")
    return len(layers)


def grown_state_dict(model: AtomCloudNet, state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    r"""The state dict of a trained AtomCloudNet with :math:`L' \geq 2`
    layers (:obj:`state`), laid out for :obj:`model`, built with the same
    flags but :math:`L \geq L'` layers, so that :obj:`model` computes the
    same function once it loads it.

    Layer :math:`t < L' - 1` (input and hidden layers) stays layer :math:`t`;
    the last layer (the one that outputs scalars only) stays last,
    :math:`L - 1`; the new layers :math:`L' - 1, \dots, L - 2` come in just
    before it. Each new layer keeps :obj:`model`'s own initialisation but
    for its output linear map :math:`\mathbf{W}`, whose weights and biases
    are zero: its convolution outputs zero, the gate passes zero
    (:math:`\mathrm{SiLU}(0) = 0`, gated irreps times zero), and the residual
    :math:`\mathbf{h}^{(t+1)} = \mathbf{h}^{(t)} + 0` makes it the identity.
    The gradient reaches :math:`\mathbf{W}` at once (its inputs are not zero),
    and the rest of the new layer from the first step on. With weight
    normalisation it is :math:`\mathbf{W}`'s gains that are zero and that the
    gradient reaches first.

    Args:
        model (AtomCloudNet): The deeper model (its new layers' other weights
            are taken from it).
        state (dict): The trained model's state dict (a ``best.pt``).

    Returns:
        A state dict for :obj:`model.load_state_dict` (which checks every
        shape: the other flags must match).
    """
    have, want = state_num_layers(state), model.num_layers
    if have < 2:
        raise ValueError(f"the state dict to grow must hold an AtomCloudNet with at least 2 "
                         f"layers (got {have})")
    if want < have:
        raise ValueError(f"cannot grow a {have}-layer AtomCloudNet into one with {want} layers: "
                         f"a model is only grown deeper")
    target = {k: v.clone() for k, v in model.state_dict().items()}
    for key, value in state.items():
        m = _CONV.match(key)
        if m is not None and int(m.group(1)) == have - 1:
            key = f"convs.{want - 1}.{m.group(2)}"
        if key not in target:
            raise ValueError(f"'{key}' is in the state dict to grow but not in the model: "
                             "the two differ in more than their number of layers")
        target[key] = value
    # Plain weights in a weight-normalised model: the gains are computed from
    # them on loading, not taken from the model's initialisation.
    for key in [k for k in target if k not in state]:
        if _weight_of_gain(key) in state:
            del target[key]
    for t in range(have - 1, want - 1):
        # zero output map: its gains (weight-normalised) or its weights, and its biases
        zeroed = ("gains" if getattr(model.convs[t].linear, "weight_norm", False)
                  else "weights", "biases")
        for key in target:
            if any(key.startswith(f"convs.{t}.linear.{name}.") for name in zeroed):
                target[key] = target[key].new_zeros(target[key].shape)
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a finished AtomCloudNet run folder (metrics.json and best.pt)")
    p.add_argument("--num-layers", type=int, required=True,
                   help="layers of the deeper model (at least the run's own)")
    p.add_argument("--checkpoint", default=None,
                   help="the weights to grow: a best.pt, or a last.pt whose weight average is "
                        "taken (default: the run's best.pt)")
    p.add_argument("--init-seed", type=int, default=None,
                   help="seed of the new layers' initialisation but for their zero output map "
                        "(default: the run's init seed)")
    p.add_argument("--out", required=True, help="where to write the grown state dict (.pt)")
    args = p.parse_args(argv)
    cfg = run_config(load_run(args.run))
    if cfg.model != "acn":
        raise SystemExit(f"{args.run} trained {cfg.model!r}: only an AtomCloudNet is grown")
    state = load_weights(args.checkpoint or os.path.join(args.run, "best.pt"))
    seed = args.init_seed if args.init_seed is not None else cfg.initial_seed
    torch.manual_seed(seed)
    deeper = dataclasses.replace(cfg, num_layers=args.num_layers)
    # mean and std are not in a state dict (the run's data set them again).
    model = build_model(deeper, cfg.target in EXTENSIVE_TARGETS, 0.0, 1.0, state.get("atomref"))
    try:
        grown = grown_state_dict(model, state)
        model.load_state_dict(grown)  # checks every shape
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"cannot grow {args.run}: {err}") from None
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(grown, args.out)
    print(f"grown from {state_num_layers(state)} to {args.num_layers} layers: {args.out} "
          f"(train it with the run's model flags, --num-layers {args.num_layers} and "
          f"--init-from {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
