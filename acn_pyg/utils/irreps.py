from typing import List, Sequence, Union

from e3nn import o3
from torch import Tensor

IrrepsLike = Union[int, str, o3.Irreps]


def as_irreps(irreps: IrrepsLike, name: str = "irreps") -> o3.Irreps:
    """An int ``n`` means ``n`` scalars (``nx0e``); a string or Irreps is parsed."""
    if isinstance(irreps, bool):
        raise ValueError(f"'{name}' must be an int, a string or e3nn.o3.Irreps (got {irreps!r})")
    if isinstance(irreps, int):
        if irreps < 1:
            raise ValueError(f"'{name}' must be a positive number of scalars (got {irreps})")
        return o3.Irreps(f"{irreps}x0e")
    try:
        out = o3.Irreps(irreps)
    except (ValueError, TypeError, AssertionError) as e:
        raise ValueError(f"'{name}' could not be parsed as irreps: {irreps!r} ({e})") from None
    if out.dim == 0:
        raise ValueError(f"'{name}' must not be empty (got {irreps!r})")
    return out


def split_blocks(t: Tensor, sizes: Sequence[int], dim: int = -1) -> List[Tensor]:
    """:obj:`t` cut into blocks of :obj:`sizes` along :obj:`dim` with one
    :func:`torch.split` (its backward is one cat, where each slice's is a zero
    fill and a copy); a single block is :obj:`t` itself, since a one-piece
    split would still copy the gradient in its backward."""
    return list(t.split(list(sizes), dim=dim)) if len(sizes) > 1 else [t]
