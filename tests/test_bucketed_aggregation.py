"""The sum over neighbours in buckets of similar neighbour count: the same
numbers as a plain scatter over the edges, and a dense molecule among small
ones pads only its own atoms."""
import pytest
import torch

from acn_pyg import AtomCloudConv, AtomCloudNet, radius_graph
from acn_pyg.nn import ChannelwiseTensorProduct, EdgeEmbedding
from acn_pyg.nn.embedding import plan_buckets

from molecules import random_molecule
from test_fused_kernels import CountSyncs


def dense_and_sparse_graph(num_atoms=40, seed=0):
    """Atom 0 sees every other atom, the others one to three neighbours each,
    the last atom none; edges shuffled."""
    g = torch.Generator().manual_seed(seed)
    pos = 2.0 * torch.randn(num_atoms, 3, generator=g)
    src, dst = [], []
    for j in range(1, num_atoms - 1):  # atom 0 sees them all, they see it
        src += [j, 0]
        dst += [0, j]
    for i in range(1, num_atoms - 1):
        for j in range(1, int(torch.randint(3, (1,), generator=g))):
            k = 1 + (i + 7 * j) % (num_atoms - 2)
            if k != i:
                src.append(k)
                dst.append(i)
    edge_index = torch.tensor([src, dst])
    return pos, edge_index[:, torch.randperm(edge_index.size(1), generator=g)]


def cluster_among_small_molecules(cluster_atoms=40, molecules=30):
    """A dense random cluster (first) and small three-atom molecules, batched."""
    z0, p0 = random_molecule(cluster_atoms, seed=0, spread=1.8)
    mols = [(z0, p0)] + [random_molecule(3, seed=1 + s) for s in range(molecules)]
    z = torch.cat([z for z, _ in mols])
    pos = torch.cat([p for _, p in mols])
    batch = torch.cat([torch.full((z.numel(),), i) for i, (z, _) in enumerate(mols)])
    return mols, z, pos, batch


def test_plan_buckets():
    # Molecules of one size: one bucket, however many classes.
    assert plan_buckets([0, 0, 3, 50, 80, 60], [0, 0, 3, 7, 15, 26], bucket_cost=2000) == [
        [0, 1, 2, 3, 4, 5]]
    # Many atoms with few neighbours, a few with many: two buckets.
    assert plan_buckets([0, 0, 8000, 0, 0, 100, 200], [0, 0, 3, 0, 0, 31, 59],
                        bucket_cost=35000) == [[0, 1, 2], [3, 4, 5, 6]]
    assert plan_buckets([5, 0], [0, 0], bucket_cost=0) == [[0, 1]]
    assert plan_buckets([0, 0], [0, 0], bucket_cost=1) == [[0, 1]]
    # Free buckets: every non-empty class its own.
    assert plan_buckets([1, 2, 0, 4], [0, 1, 0, 7], bucket_cost=0) == [[0], [1], [2, 3]]


def test_embedding_pads_each_bucket_to_its_own_width():
    pos, edge_index = dense_and_sparse_graph()
    features = EdgeEmbedding(3.5)(pos, edge_index)
    count = torch.bincount(edge_index[1], minlength=pos.size(0))
    assert len(features.buckets) == 2 and features.node_order is not None
    assert sum(n for n, _ in features.buckets) == pos.size(0)
    assert features.buckets[-1] == (1, int(count.max()))  # the dense atom alone
    assert features.sh_dense.size(0) < 2 * edge_index.size(1)
    assert features.slot.unique().numel() == edge_index.size(1)  # one row per edge

    # Molecules of similar size: one bucket, every atom in order.
    _, pos = random_molecule(12, seed=3)
    edge_index = radius_graph(pos, 3.0)
    features = EdgeEmbedding(3.0)(pos, edge_index)
    count = torch.bincount(edge_index[1], minlength=12)
    assert features.buckets == ((12, int(count.max())),) and features.node_order is None


@pytest.mark.parametrize("lmax", [1, 2])
def test_bucketed_aggregation_equals_scatter_over_edges(lmax):
    """Forward and gradients (messages and positions), float64, with one dense
    atom among sparse ones and an atom without neighbours."""
    pos, edge_index = dense_and_sparse_graph()
    pos.requires_grad_()
    tp = ChannelwiseTensorProduct("3x0e+2x1o", lmax)
    emb = EdgeEmbedding(3.5, lmax)
    message = torch.randn(edge_index.size(1), tp.message_dim, requires_grad=True)
    features = emb(pos, edge_index)
    assert len(features.buckets) > 1
    out = tp.aggregate(message, features).index_select(0, features.node_order)

    vec = pos[edge_index[0]] - pos[edge_index[1]]
    length = vec.norm(dim=-1)
    sh = emb.spherical_harmonics(vec, length) * emb.envelope(length)
    per_edge = sh.unsqueeze(2) * message.unsqueeze(1)
    expected = per_edge.new_zeros(pos.size(0), *per_edge.shape[1:]).index_add(
        0, edge_index[1], per_edge)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert (out[-1] == 0).all()  # no neighbours

    probe = torch.randn_like(out)
    grads = torch.autograd.grad((out * probe).sum(), [message, pos])
    expected_grads = torch.autograd.grad((expected * probe).sum(), [message, pos])
    for g, g_ref in zip(grads, expected_grads):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def test_dense_cluster_among_small_molecules_equals_each_alone():
    """Batched (two buckets) equals one by one (one bucket each): energies and
    forces, float64."""
    mols, z, pos, batch = cluster_among_small_molecules()
    edge_index = radius_graph(pos, 5.0, batch)
    assert len(EdgeEmbedding(5.0)(pos, edge_index).buckets) > 1
    torch.manual_seed(0)
    model = AtomCloudNet(hidden_channels=8, hidden_irreps="8x0e+2x1o+2x2e", num_layers=2,
                         radial_hidden=8).double()
    pos = pos.clone().requires_grad_()
    energy = model(z, pos, batch)
    (forces,) = torch.autograd.grad(energy.sum(), pos)
    alone, alone_forces = [], []
    for z_m, p_m in mols:
        p_m = p_m.clone().requires_grad_()
        e = model(z_m, p_m)
        alone.append(e)
        alone_forces.append(torch.autograd.grad(e.sum(), p_m)[0])
    torch.testing.assert_close(energy, torch.cat(alone), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(forces, torch.cat(alone_forces), rtol=1e-10, atol=1e-10)


def test_buckets_take_no_host_sync_more():
    _, z, pos, batch = cluster_among_small_molecules()
    edge_index = radius_graph(pos, 5.0, batch)
    model = AtomCloudNet(hidden_channels=8, num_layers=2, radial_hidden=8,
                         interaction_graph=lambda p, b: edge_index).double()
    assert len(model.edge_embedding(pos, edge_index).buckets) > 1
    with CountSyncs() as counter:
        model(z, pos, batch)
    # The input checks; the bucket plan with the zero-length check.
    assert counter.count <= 2


def test_compiled_convolution_of_buckets_has_no_graph_breaks_and_equals_eager():
    mols, _, pos, batch = cluster_among_small_molecules(cluster_atoms=24, molecules=12)
    conv = AtomCloudConv("6x0e+2x1o", "4x0e+2x1o", cutoff=5.0)
    x = torch.randn(pos.size(0), conv.in_irreps.dim)
    edge_index = radius_graph(pos, 5.0, batch)
    edge_features = conv.edge_embedding(pos, edge_index)
    assert len(edge_features.buckets) > 1
    compiled = torch.compile(conv.convolve, fullgraph=True)
    torch.testing.assert_close(compiled(x, edge_index, edge_features),
                               conv.convolve(x, edge_index, edge_features), rtol=1e-9, atol=1e-9)
