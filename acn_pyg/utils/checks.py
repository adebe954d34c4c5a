"""Input checks for the public boundary.

Every check raises :class:`ValueError` that names the offending argument and
what was expected. They are skipped while :func:`torch.compile` traces, since
data-dependent branches would break the graph; eager calls are always checked.
"""
from typing import Optional

import torch
from torch import Tensor

MAX_ATOMIC_NUMBER = 100


def is_tracing() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_scripting()


def _check_pos_layout(pos: Tensor, name: str) -> None:
    if not isinstance(pos, Tensor):
        raise ValueError(f"'{name}' must be a torch.Tensor (got {type(pos).__name__})")
    if pos.dim() != 2 or pos.size(-1) != 3:
        raise ValueError(f"'{name}' must have shape [num_atoms, 3] (got {list(pos.shape)})")
    if not pos.is_floating_point():
        raise ValueError(f"'{name}' must be a floating point tensor (got {pos.dtype})")


def _check_z_layout(z: Tensor, name: str) -> None:
    if not isinstance(z, Tensor):
        raise ValueError(f"'{name}' must be a torch.Tensor (got {type(z).__name__})")
    if z.dim() != 1:
        raise ValueError(f"'{name}' must have shape [num_atoms] (got {list(z.shape)})")
    if z.dtype not in (torch.long, torch.int32):
        raise ValueError(f"'{name}' must hold integer atomic numbers as torch.long or "
                         f"torch.int32 (got {z.dtype}; convert it with .long())")


def _check_batch_layout(batch: Tensor, num_atoms: int, name: str) -> None:
    if not isinstance(batch, Tensor):
        raise ValueError(f"'{name}' must be a torch.Tensor (got {type(batch).__name__})")
    if batch.dim() != 1 or batch.numel() != num_atoms:
        raise ValueError(
            f"'{name}' must have shape [{num_atoms}] (one graph index per atom), "
            f"got {list(batch.shape)}")
    if batch.is_floating_point() or batch.dtype == torch.bool:
        raise ValueError(f"'{name}' must be an integer tensor (got {batch.dtype})")


def _check_z_range(lo: int, hi: int, name: str) -> None:
    if lo < 1 or hi > MAX_ATOMIC_NUMBER:
        raise ValueError(
            f"'{name}' must hold atomic numbers in 1..{MAX_ATOMIC_NUMBER} "
            f"(got values in {lo}..{hi})")


def check_pos(pos: Tensor, name: str = "pos") -> None:
    _check_pos_layout(pos, name)
    if pos.numel() > 0 and not bool(torch.isfinite(pos).all()):
        bad = (~torch.isfinite(pos)).any(dim=-1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"'{name}' contains NaN or infinite coordinates (atoms {bad}...)")


def check_z(z: Tensor, name: str = "z") -> None:
    _check_z_layout(z, name)
    if z.numel() > 0:
        lo, hi = torch.stack(torch.aminmax(z)).tolist()  # one host sync, not two
        _check_z_range(lo, hi, name)


def check_batch(batch: Optional[Tensor], num_atoms: int, name: str = "batch") -> None:
    if batch is None:
        return
    _check_batch_layout(batch, num_atoms, name)
    if batch.numel() > 0 and int(batch.min()) < 0:
        raise ValueError(f"'{name}' must hold non-negative graph indices")


def check_atoms(z: Tensor, pos: Tensor, batch: Optional[Tensor]) -> int:
    """:func:`check_z`, :func:`check_pos` and :func:`check_batch` of one
    system of atoms with a single host sync (one :obj:`tolist` of their
    reductions) instead of three; returns the number of graphs,
    :obj:`batch.max() + 1` (one without :obj:`batch`, zero without atoms)."""
    _check_z_layout(z, "z")
    _check_pos_layout(pos, "pos")
    num_atoms = pos.size(0)
    if z.numel() != num_atoms:
        raise ValueError(f"'z' has {z.numel()} atoms but 'pos' has {num_atoms}")
    if batch is not None:
        _check_batch_layout(batch, num_atoms, "batch")
    if num_atoms == 0:
        return 0
    z_lo, z_hi = torch.aminmax(z)
    parts = [z_lo.long(), z_hi.long(), torch.isfinite(pos).all().long()]
    if batch is not None:
        parts.extend(b.long() for b in torch.aminmax(batch))
    values = torch.stack(parts).tolist()  # the one host sync
    _check_z_range(values[0], values[1], "z")
    if not values[2]:
        check_pos(pos)  # names the offending atoms
    if batch is None:
        return 1
    if values[3] < 0:
        raise ValueError("'batch' must hold non-negative graph indices")
    return values[4] + 1


def check_features(x: Tensor, num_atoms: int, dim: int, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"'{name}' must be a torch.Tensor (got {type(x).__name__})")
    if x.dim() != 2 or x.size(0) != num_atoms or x.size(1) != dim:
        raise ValueError(f"'{name}' must have shape [{num_atoms}, {dim}] (got {list(x.shape)})")


def check_edge_index(edge_index: Tensor, num_atoms: int, name: str = "edge_index") -> None:
    if not isinstance(edge_index, Tensor):
        raise ValueError(f"'{name}' must be a torch.Tensor (got {type(edge_index).__name__})")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'{name}' must have shape [2, num_edges] (got {list(edge_index.shape)})")
    if edge_index.dtype != torch.long:
        raise ValueError(f"'{name}' must be a torch.long tensor (got {edge_index.dtype})")
    if edge_index.numel() > 0 and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_atoms):
        raise ValueError(f"'{name}' holds atom indices outside 0..{num_atoms - 1}")


def check_same_device(**tensors: Optional[Tensor]) -> None:
    named = [(k, t) for k, t in tensors.items() if isinstance(t, Tensor)]
    if not named:
        return
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.device != first.device:
            raise ValueError(
                f"'{name}' is on {t.device} but '{first_name}' is on {first.device}; "
                f"move all inputs to one device")


def check_matches_module(module: torch.nn.Module, **tensors: Optional[Tensor]) -> None:
    """The floating point inputs must have the dtype of :obj:`module`'s
    parameters, and every input must be on their device: otherwise the first
    matrix product fails with a message that names neither the input nor the
    fix. The dtype is not checked under :func:`torch.autocast`. No host
    sync."""
    param = next(module.parameters(), None)
    if param is None:
        return
    kind = type(module).__name__
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            continue
        if t.device != param.device:
            raise ValueError(
                f"'{name}' is on {t.device} but the {kind}'s parameters are on {param.device}; "
                f"move the inputs or the model (.to(device)) so that they match")
        # Under autocast, lower-precision inputs are what the user asked for.
        if (t.is_floating_point() and t.dtype != param.dtype
                and not torch.is_autocast_enabled(t.device.type)):
            raise ValueError(
                f"'{name}' is {t.dtype} but the {kind}'s parameters are {param.dtype}; "
                f"convert the inputs (.to({param.dtype})) or the model "
                f"(.to({t.dtype})) so that they match")


def check_edge_lengths(length: Tensor, edge_index: Tensor, name: str = "pos") -> None:
    """Zero-length edges have no direction: two atoms at one position, or a self-loop."""
    if length.numel() > 0 and not bool((length > 0).all()):
        k = int((length == 0).nonzero()[0])
        j, i = int(edge_index[0, k]), int(edge_index[1, k])
        what = "a self-loop" if i == j else "two atoms at the same position"
        raise ValueError(
            f"'{name}' gives the edge {j} -> {i} zero length ({what}); its direction is "
            f"undefined")


def layout_version(local_metadata: dict, current: int, prefix: str, name: str):
    """The layout version a state dict's metadata gives a module
    (:obj:`None` when it has none), or a :class:`ValueError` if it is newer
    than :obj:`current`, the layout this acn_pyg writes."""
    version = local_metadata.get("version")
    if version is not None and version > current:
        raise ValueError(
            f"the state dict of '{prefix or name}' has layout version {version}, newer than "
            f"this acn_pyg's {current}: load it with the acn_pyg that saved it")
    return version
