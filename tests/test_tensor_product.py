import pytest
import torch
from e3nn import o3
from e3nn.util.test import assert_equivariant

from acn_pyg import radius_graph
from acn_pyg.nn import ChannelwiseTensorProduct, EdgeEmbedding


def e3nn_reference(tp):
    instructions = [(i_in, l2, k, "uvu", True) for k, (i_in, l2, _) in enumerate(tp.instructions)]
    return o3.TensorProduct(
        tp.irreps_in, tp.irreps_sh, tp.irreps_out, instructions, shared_weights=False,
        internal_weights=False, irrep_normalization="component", path_normalization="none")


def cloud(num_atoms=15, seed=0, dense_atoms=0):
    """Random atoms; with ``dense_atoms``, that many more packed in a small
    ball among sparse ones, so that the edge embedding pads in buckets."""
    g = torch.Generator().manual_seed(seed)
    pos = 2.0 * torch.randn(num_atoms, 3, generator=g)
    if dense_atoms:
        pos = torch.cat([4.0 * pos, 0.8 * torch.randn(dense_atoms, 3, generator=g)])
    # Shuffled edges: the kernel must not rely on edges sorted by centre.
    edge_index = radius_graph(pos, 3.5)
    edge_index = edge_index[:, torch.randperm(edge_index.size(1), generator=g)]
    return pos, edge_index


@pytest.mark.parametrize("irreps, lmax, dense_atoms", [
    ("5x0e", 2, 0), ("4x0e+3x1o+2x2e", 2, 0), ("2x0o+3x1e", 3, 0), ("3x0e+2x1o", 1, 0),
    ("4x0e+3x1o+2x2e", 2, 20)])
def test_equals_e3nn_tensor_product_summed_over_neighbours(irreps, lmax, dense_atoms):
    tp = ChannelwiseTensorProduct(irreps, lmax)
    ref = e3nn_reference(tp)
    assert tp.weight_numel == ref.weight_numel
    pos, edge_index = cloud(40 if dense_atoms else 15, dense_atoms=dense_atoms)
    emb = EdgeEmbedding(3.5, lmax)
    features = emb(pos, edge_index)
    assert (len(features.buckets) > 1) == (dense_atoms > 0)
    x = torch.randn(pos.size(0), tp.irreps_in.dim)
    w = torch.randn(edge_index.size(1), tp.weight_numel)
    out = tp(x, edge_index, w, features)

    sh = o3.spherical_harmonics(tp.irreps_sh, pos[edge_index[0]] - pos[edge_index[1]], True,
                                normalization="component")
    sh = sh * features.envelope  # the edge embedding's harmonics carry the envelope
    w_e3nn = torch.empty_like(w)
    w_e3nn[:, tp.e3nn_weight_index()] = w
    per_edge = ref(x[edge_index[0]], sh, w_e3nn)
    expected = torch.zeros(pos.size(0), per_edge.size(1)).index_add_(0, edge_index[1], per_edge)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_filter_keeps_only_requested_irreps():
    tp = ChannelwiseTensorProduct("4x0e+2x1o", 2, filter_ir_out=[o3.Irrep("1o")])
    assert {ir for _, ir in tp.irreps_out} == {o3.Irrep("1o")}


def test_equivariant():
    tp = ChannelwiseTensorProduct("3x0e+2x1o+2x2e", 2)
    emb = EdgeEmbedding(3.5, 2)
    _, edge_index = cloud(8, seed=1)
    w = torch.randn(edge_index.size(1), tp.weight_numel)

    def f(x, pos):
        features = emb(pos, edge_index)
        return tp(x, edge_index, w, features)

    assert_equivariant(f, irreps_in=[tp.irreps_in, o3.Irreps("1o")], irreps_out=tp.irreps_out,
                       args_in=[torch.randn(8, tp.irreps_in.dim), cloud(8, seed=1)[0]])


def test_sorted_output_is_the_same_blocks_grouped_by_irrep():
    irreps = "4x0e+3x1o+2x2e"
    tp, tp_sorted = ChannelwiseTensorProduct(irreps, 2), ChannelwiseTensorProduct(irreps, 2,
                                                                                  sort_output=True)
    pos, edge_index = cloud()
    features = EdgeEmbedding(3.5, 2)(pos, edge_index)
    x = torch.randn(pos.size(0), tp.irreps_in.dim)
    w = torch.randn(edge_index.size(1), tp.weight_numel)
    out = tp(x, edge_index, w, features)
    out_sorted = tp_sorted(x, edge_index, w, features)
    blocks = [out[:, s] for s in tp.irreps_out.slices()]
    order = sorted(range(len(blocks)), key=lambda k: (tp.irreps_out[k][1].l,
                                                      -tp.irreps_out[k][1].p))
    assert [tp.irreps_out[k] for k in order] == list(tp_sorted.irreps_out)
    torch.testing.assert_close(out_sorted, torch.cat([blocks[k] for k in order], dim=1))
    simplified = tp_sorted.irreps_out.simplify()
    assert len({ir for _, ir in simplified}) == len(simplified)  # one block per irrep
