r"""Export for deployment: a trained AtomCloudNet as a
:func:`torch.export` program that runs without acn_pyg's classes.

The program maps one structure's atomic numbers :obj:`z` (:obj:`[n]`,
int64), positions :obj:`pos` (:obj:`[n, 3]`, float32, Angstrom) and
interaction graph :obj:`edge_index` (:obj:`[2, e]`, int64, source and
target: every ordered pair of distinct atoms closer than the cutoff; pairs
farther apart may be included and contribute nothing) to the prediction
(:obj:`[1]`), with :math:`n` and :math:`e` dynamic. Forces are
:math:`-\partial E / \partial \mathbf{p}` by autograd through the loaded
program::

    program = torch.export.load("model.pt2").module()
    pos.requires_grad_(True)
    energy = program(z, pos, edge_index)
    forces = -torch.autograd.grad(energy.sum(), pos)[0]

The file's :obj:`extra_files` hold ``acn_pyg.json``: the target, unit,
cutoff, elements and acn_pyg version (:func:`read_export_info`)."""
import json
from typing import Dict

import torch
from torch import Tensor

from acn_pyg.inference.checkpoint import TrainedModel, load_trained

_INFO = "acn_pyg.json"


class _OneStructure(torch.nn.Module):
    """The model on one structure with a given graph: what is exported."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z: Tensor, pos: Tensor, edge_index: Tensor) -> Tensor:
        return self.model(z, pos, edge_index=edge_index).view(-1)


def example_structure(trained: TrainedModel, num_atoms: int = 12, seed: int = 0):
    """A random structure of the model's elements, atoms about 1.5 A apart
    (inside the cutoff of one another), and its radius graph."""
    from acn_pyg.graph import radius_graph
    g = torch.Generator().manual_seed(seed)
    elements = torch.tensor(trained.elements)
    z = elements[torch.randint(len(elements), (num_atoms,), generator=g)]
    pos = torch.randn(num_atoms, 3, generator=g) * 1.5
    return z, pos, radius_graph(pos, trained.model.cutoff)


def export_model(checkpoint, out: str, check: bool = True) -> Dict[str, object]:
    """Exports the model of :obj:`checkpoint` (a path or a
    :class:`~acn_pyg.inference.TrainedModel`) to :obj:`out` (``.pt2``) with
    :func:`torch.export.export` and :func:`torch.export.save`; with
    :obj:`check`, loads the file back and compares its prediction and
    forces with the eager model's on two structures of other sizes than
    the one it was traced on. Returns what it wrote and the largest
    differences."""
    from acn_pyg.models import AtomCloudNet

    trained = checkpoint if isinstance(checkpoint, TrainedModel) else load_trained(checkpoint)
    model = trained.model.float().cpu().eval()
    if not isinstance(model, AtomCloudNet):
        raise ValueError(f"{trained.path}: export supports AtomCloudNet models (this one is a "
                         f"{type(model).__name__})")
    if model.readout != "molecule" or model.num_extra_features or model.many_body is not None:
        raise ValueError(f"{trained.path}: export supports molecular outputs of z and pos "
                         "only (not readout='atom', extra features or many-body terms)")
    info = {"target": trained.target, "unit": trained.unit, "energy": trained.energy,
            "cutoff": model.cutoff, "elements": list(trained.elements),
            "acn_pyg_version": _version(),
            "inputs": ["z [n] int64", "pos [n, 3] float32", "edge_index [2, e] int64"],
            "output": "[1]"}
    atoms = torch.export.Dim("atoms", min=2, max=2 ** 20)
    edges = torch.export.Dim("edges", min=2, max=2 ** 31 - 1)
    wrapped = _OneStructure(model)
    program = torch.export.export(wrapped, example_structure(trained),
                                  dynamic_shapes=({0: atoms}, {0: atoms}, {1: edges}),
                                  strict=False)
    torch.export.save(program, out, extra_files={_INFO: json.dumps(info)})
    if check:
        loaded = torch.export.load(out).module()
        diffs = [_compare(loaded, wrapped, *example_structure(trained, n, seed=n))
                 for n in (5, 40)]
        info["max_abs_diff"] = max(d[0] for d in diffs)
        info["max_abs_diff_forces"] = max(d[1] for d in diffs)
    info["path"] = out
    return info


def _compare(loaded, eager, z, pos, edge_index):
    outs = []
    for module in (loaded, eager):
        p = pos.clone().requires_grad_(True)
        y = module(z, p, edge_index)
        outs.append((y.detach(), torch.autograd.grad(y.sum(), p)[0]))
    return (float((outs[0][0] - outs[1][0]).abs().max()),
            float((outs[0][1] - outs[1][1]).abs().max()))


def read_export_info(path: str) -> Dict[str, object]:
    """The ``acn_pyg.json`` that :func:`export_model` stored in :obj:`path`."""
    extra = {_INFO: ""}
    torch.export.load(path, extra_files=extra)
    return json.loads(extra[_INFO])


def _version() -> str:
    from acn_pyg import __version__
    return __version__
