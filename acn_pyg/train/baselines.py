"""PyG's SchNet, DimeNet and DimeNet++ with their published QM9 settings, made
to run without ``pyg-lib``: their radius graphs come from
:func:`acn_pyg.radius_graph` (torch_cluster or pure PyTorch), PyG's code is
used unedited. Without :obj:`torch_sparse`, DimeNet's triplets come from
:func:`triplets_torch`, which returns the same tensors."""
import contextlib
from typing import Optional, Tuple
from unittest import mock

import torch
from torch import Tensor

from acn_pyg.graph import radius_graph
from acn_pyg.utils.ranges import expand_ranges

try:
    import torch_sparse  # noqa: F401  (PyG's DimeNet triplets use its SparseTensor)
    HAS_TORCH_SPARSE = True
except ImportError:
    HAS_TORCH_SPARSE = False

#: Published QM9 hyperparameters (Schütt et al. 2017; Gasteiger et al. 2020).
SCHNET_QM9 = dict(hidden_channels=128, num_filters=128, num_interactions=6, num_gaussians=50,
                  cutoff=10.0, max_num_neighbors=32)
DIMENET_PP_QM9 = dict(hidden_channels=128, num_blocks=4, int_emb_size=64, basis_emb_size=8,
                      out_emb_channels=256, num_spherical=7, num_radial=6, cutoff=5.0,
                      max_num_neighbors=32)
DIMENET_QM9 = dict(hidden_channels=128, num_blocks=6, num_bilinear=8, num_spherical=7,
                   num_radial=6, cutoff=5.0, max_num_neighbors=32)


class SchNetGraph(torch.nn.Module):
    """SchNet's ``interaction_graph``: edges within ``cutoff``, capped at
    ``max_num_neighbors`` like PyG's default, with their lengths."""

    def __init__(self, cutoff: float, max_num_neighbors: int = 32):
        super().__init__()
        self.cutoff = cutoff
        self.max_num_neighbors = max_num_neighbors

    def forward(self, pos: Tensor, batch: Tensor) -> Tuple[Tensor, Tensor]:
        edge_index = radius_graph(pos, self.cutoff, batch,
                                  max_num_neighbors=self.max_num_neighbors)
        return edge_index, (pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=-1)


def triplets_torch(edge_index: Tensor, num_nodes: int) -> Tuple[Tensor, ...]:
    """Pure-PyTorch version of PyG's :func:`dimenet.triplets` (which needs
    :obj:`torch_sparse`): the same seven tensors in the same order. For every
    edge :math:`j \\to i` (position :math:`e`), every edge :math:`k \\to j`
    with :math:`k \\neq i`, ordered by :math:`e` and then by :math:`k`."""
    row, col = edge_index  # j -> i
    # Edges grouped by their target, sorted by source within a target: the
    # CSR layout of PyG's adj_t (rows = targets, columns = sources).
    order = torch.sort(col * num_nodes + row, stable=True).indices
    in_degree = torch.bincount(col, minlength=num_nodes)
    first = torch.cumsum(in_degree, 0) - in_degree
    count = in_degree.index_select(0, row)  # edges k -> j for each edge j -> i
    idx_ji, within = expand_ranges(count)
    idx_i = col.index_select(0, idx_ji)
    idx_j = row.index_select(0, idx_ji)
    idx_kj = order.index_select(0, first.index_select(0, idx_j) + within)
    idx_k = row.index_select(0, idx_kj)
    mask = idx_i != idx_k  # Remove i == k triplets.
    return (col, row, idx_i[mask], idx_j[mask], idx_k[mask], idx_kj[mask], idx_ji[mask])


def _pyg_radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, **_):
    return radius_graph(x, r, batch, loop=loop, max_num_neighbors=max_num_neighbors)


class DimeNetWithGraph(torch.nn.Module):
    """Runs a PyG DimeNet / DimeNet++ with :func:`acn_pyg.radius_graph` in
    place of PyG's own, which needs ``pyg-lib``; outputs are standardised
    like SchNet's: ``std * out + mean * natoms + sum atomref[z]`` for
    extensive targets, ``std * out + mean`` otherwise."""

    def __init__(self, model: torch.nn.Module, mean: float = 0.0, std: float = 1.0,
                 atomref: Optional[Tensor] = None, extensive: bool = True):
        super().__init__()
        self.model = model
        self.extensive = extensive
        self.mean = float(mean)
        self.std = float(std)
        self.register_buffer("atomref", None if atomref is None else atomref.view(-1).clone())

    def forward(self, z: Tensor, pos: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        if batch is None:
            batch = torch.zeros_like(z)
        import torch_geometric.nn.models.dimenet as dimenet
        with contextlib.ExitStack() as patches:
            patches.enter_context(mock.patch.object(dimenet, "radius_graph", _pyg_radius_graph))
            if not HAS_TORCH_SPARSE:
                patches.enter_context(mock.patch.object(dimenet, "triplets", triplets_torch))
            out = self.model(z, pos, batch)
        atoms = torch.bincount(batch, minlength=out.size(0)).to(out.dtype).unsqueeze(-1)
        out = out * self.std + (atoms * self.mean if self.extensive else self.mean)
        if self.atomref is not None:
            out = out + torch.zeros_like(out).index_add_(0, batch, self.atomref[z].unsqueeze(-1))
        return out


def build_baseline(name: str, extensive: bool, mean: float = 0.0, std: float = 1.0,
                   atomref: Optional[Tensor] = None) -> torch.nn.Module:
    """``"schnet"``, ``"dimenet++"`` or ``"dimenet"`` with published QM9 settings."""
    from torch_geometric.nn.models import DimeNet, DimeNetPlusPlus, SchNet

    if name == "schnet":
        cfg = dict(SCHNET_QM9)
        graph = SchNetGraph(cfg["cutoff"], cfg.pop("max_num_neighbors"))
        return SchNet(**cfg, readout="add" if extensive else "mean", mean=mean, std=std,
                      atomref=None if atomref is None else atomref.view(-1, 1)[:100],
                      interaction_graph=graph)
    if name in ("dimenet++", "dimenet"):
        cls, cfg = (DimeNetPlusPlus, DIMENET_PP_QM9) if name == "dimenet++" else (DimeNet,
                                                                                  DIMENET_QM9)
        return DimeNetWithGraph(cls(out_channels=1, **cfg), mean=mean, std=std, atomref=atomref,
                                extensive=extensive)
    raise ValueError(f"unknown baseline {name!r}; choose schnet, dimenet++ or dimenet")
