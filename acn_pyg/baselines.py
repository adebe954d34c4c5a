"""PyG's SchNet, DimeNet and DimeNet++ with their published QM9 settings, made
to run without ``pyg-lib``: their radius graphs come from
:func:`acn_pyg.radius_graph` (torch_cluster or pure PyTorch), PyG's code is
used unedited."""
from typing import Optional, Tuple
from unittest import mock

import torch
from torch import Tensor

from acn_pyg.graph import radius_graph

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
        with mock.patch.object(dimenet, "radius_graph", _pyg_radius_graph):
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
        try:
            import torch_sparse  # noqa: F401  (DimeNet's triplets use SparseTensor)
        except ImportError as e:
            raise ImportError("DimeNet needs torch_sparse: bash scripts/install.sh --benchmarks"
                              ) from e
        cls, cfg = (DimeNetPlusPlus, DIMENET_PP_QM9) if name == "dimenet++" else (DimeNet,
                                                                                  DIMENET_QM9)
        return DimeNetWithGraph(cls(out_channels=1, **cfg), mean=mean, std=std, atomref=atomref,
                                extensive=extensive)
    raise ValueError(f"unknown baseline {name!r}; choose schnet, dimenet++ or dimenet")
