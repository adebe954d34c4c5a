"""PyG's baselines run without torch_sparse: the pure-PyTorch DimeNet
triplets equal PyG's own."""
from unittest import mock

import pytest
import torch

import acn_pyg.train.baselines as baselines
from acn_pyg.train.baselines import build_baseline, triplets_torch
from acn_pyg.graph import radius_graph


def _shuffled_graph(seed=0, num_atoms=120):
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(num_atoms, 3, generator=g) * 5
    batch = torch.arange(num_atoms) // 20
    edge_index = radius_graph(pos, 2.5, batch, max_num_neighbors=32)
    return edge_index[:, torch.randperm(edge_index.size(1), generator=g)], num_atoms


def test_triplets_torch_enumerates_every_path():
    edge_index, n = _shuffled_graph()
    col, row, i, j, k, kj, ji = triplets_torch(edge_index, n)
    # Every triplet is a path k -> j -> i of two edges with k != i ...
    assert torch.equal(edge_index[1, ji], i) and torch.equal(edge_index[0, ji], j)
    assert torch.equal(edge_index[1, kj], j) and torch.equal(edge_index[0, kj], k)
    assert bool((i != k).all())
    # ... and all of them are there, counted by brute force.
    src, dst = edge_index.tolist()
    expected = sum(1 for e in range(len(src)) for f in range(len(src))
                   if dst[f] == src[e] and src[f] != dst[e])
    assert i.numel() == expected


def test_triplets_torch_equals_pyg():
    pytest.importorskip("torch_sparse")
    from torch_geometric.nn.models.dimenet import triplets

    for seed in range(3):
        edge_index, n = _shuffled_graph(seed)
        for a, b in zip(triplets(edge_index, n), triplets_torch(edge_index, n)):
            assert torch.equal(a, b)


def test_dimenet_pp_runs_without_torch_sparse(batch_of_molecules):
    _, z, pos, batch = batch_of_molecules
    torch.manual_seed(0)
    model = build_baseline("dimenet++", extensive=True)
    with mock.patch.object(baselines, "HAS_TORCH_SPARSE", False):
        out = model(z, pos, batch)
    assert out.shape == (int(batch.max()) + 1, 1) and bool(torch.isfinite(out).all())
    if baselines.HAS_TORCH_SPARSE:
        torch.testing.assert_close(model(z, pos, batch), out)
