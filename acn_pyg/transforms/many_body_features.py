from typing import Optional, Sequence

from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from acn_pyg.nn.many_body import CHUNK_SIZE, MANY_BODY_TERMS, ManyBodyTerms


class ManyBodyFeatures(BaseTransform):
    r"""Stores the invariant two- and three-body atom descriptors of
    :class:`~acn_pyg.nn.ManyBodyTerms` (Coulomb, London and
    Axilrod-Teller-Muto sums) in :obj:`data[attr]`, shape
    :obj:`[num_nodes, len(terms)]` in the order of :obj:`terms`.
    Reads :obj:`data.z` and :obj:`data.pos` (and :obj:`data.batch` on a
    batch). Usable as :obj:`pre_transform` of a QM9 dataset, so the features
    are computed once. Two atoms of one molecule at the same position (within
    the cutoff) raise a :class:`ValueError`.

    Args:
        terms (tuple of str, optional): Terms, in output order.
            (default: :obj:`("coulomb", "london", "atm")`)
        cutoff (float, optional): Cutoff radius in Angstrom with a smooth
            envelope; :obj:`None` sums over the whole molecule. (default: :obj:`None`)
        normalize (bool, optional): Apply the signed :math:`\log(1 + |x|)`
            squashing; :obj:`False` stores the raw sums. (default: :obj:`True`)
        attr (str, optional): Attribute to set. (default: :obj:`"many_body"`)
        chunk_size (int, optional): The most atom pairs, and the most atom
            triples, handled at once; bounds the memory of whole-molecule
            sums. (default: :data:`~acn_pyg.nn.many_body.CHUNK_SIZE`)
    """

    def __init__(self, terms: Sequence[str] = MANY_BODY_TERMS, cutoff: Optional[float] = None,
                 normalize: bool = True, attr: str = "many_body",
                 chunk_size: int = CHUNK_SIZE):
        self.module = ManyBodyTerms(terms, cutoff, normalize, chunk_size)
        self.attr = attr

    def forward(self, data: Data) -> Data:
        for key in ("z", "pos"):
            if getattr(data, key, None) is None:
                raise ValueError(f"ManyBodyFeatures needs 'data.{key}', which is missing")
        data[self.attr] = self.module(data.z, data.pos, getattr(data, "batch", None)).detach()
        return data

    def __repr__(self) -> str:
        # What the stored values depend on, and not chunk_size: a QM9 cache
        # records this text and is rebuilt when it changes.
        m = self.module
        return (f"{self.__class__.__name__}(terms={m.terms}, cutoff={m.cutoff}, "
                f"normalize={m.normalize}, attr={self.attr!r})")
