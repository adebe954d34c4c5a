import warnings

import pytest
import torch

import acn_pyg.graph.radius as rg
from acn_pyg import radius_graph
from acn_pyg.graph import HAS_TORCH_CLUSTER, RadiusGraph

needs_cluster = pytest.mark.skipif(not HAS_TORCH_CLUSTER, reason="torch_cluster is not installed")


def brute_force(pos, r, batch, loop):
    dist = torch.cdist(pos, pos)
    mask = (dist < r) & (batch[:, None] == batch[None, :])
    if not loop:
        mask.fill_diagonal_(False)
    i, j = mask.nonzero().t()
    order = torch.argsort(i * pos.size(0) + j)
    return torch.stack([j[order], i[order]])


def cloud(n, seed, graphs=3, box=6.0):
    g = torch.Generator().manual_seed(seed)
    pos = box * torch.rand(n, 3, generator=g)
    batch = torch.randint(graphs, (n,), generator=g)
    return pos, batch


@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("backend", ["torch", pytest.param("torch_cluster", marks=needs_cluster)])
def test_matches_brute_force(loop, backend):
    pos, batch = cloud(300, seed=1)  # unsorted batch on purpose
    expected = brute_force(pos, 2.0, batch, loop)
    out = radius_graph(pos, 2.0, batch, loop=loop, backend=backend)
    assert torch.equal(out, expected)


@needs_cluster
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backends_give_the_same_edges(seed):
    pos, batch = cloud(500, seed, graphs=4)
    batch = batch.sort().values
    a = radius_graph(pos, 1.7, batch, backend="torch")
    b = radius_graph(pos, 1.7, batch, backend="torch_cluster")
    assert a.size(1) > 1000
    assert torch.equal(a, b)


def test_source_to_target_and_no_cross_graph_edges():
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    batch = torch.tensor([0, 0, 1])
    edge_index = radius_graph(pos, 1.5, batch)
    assert edge_index.tolist() == [[1, 0], [0, 1]]


def test_chunked_cell_list_is_exact(monkeypatch):
    pos, batch = cloud(400, seed=3, graphs=2)
    full = radius_graph(pos, 2.0, batch, backend="torch")
    monkeypatch.setattr(rg, "MAX_CANDIDATE_PAIRS", 500)
    assert torch.equal(radius_graph(pos, 2.0, batch, backend="torch"), full)


@pytest.mark.parametrize("backend", ["torch", pytest.param("torch_cluster", marks=needs_cluster)])
def test_max_num_neighbors_keeps_nearest_and_warns_once(backend, monkeypatch):
    monkeypatch.setattr(rg, "_warned_truncation", False)
    pos, _ = cloud(200, seed=4, graphs=1, box=3.0)
    full = radius_graph(pos, 2.5, backend=backend)
    with pytest.warns(UserWarning, match="max_num_neighbors=5 dropped"):
        capped = radius_graph(pos, 2.5, max_num_neighbors=5, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        radius_graph(pos, 2.5, max_num_neighbors=5, backend=backend)
    j, i = capped
    assert torch.bincount(i, minlength=200).max() == 5
    dist = (pos[full[0]] - pos[full[1]]).norm(dim=-1)
    for centre in range(0, 200, 37):
        d = dist[full[1] == centre].sort().values
        kept = (pos[j[i == centre]] - pos[centre]).norm(dim=-1).sort().values
        assert torch.allclose(kept, d[:5])


@needs_cluster
def test_capped_backends_agree(monkeypatch):
    monkeypatch.setattr(rg, "_warned_truncation", True)
    pos, batch = cloud(300, seed=5, graphs=2, box=4.0)
    a = radius_graph(pos, 2.5, batch, max_num_neighbors=7, backend="torch")
    b = radius_graph(pos, 2.5, batch, max_num_neighbors=7, backend="torch_cluster")
    assert torch.equal(a, b)


def test_default_keeps_every_neighbour_in_dense_systems():
    pos, _ = cloud(300, seed=6, graphs=1, box=2.0)  # ~all pairs within 4 A
    edge_index = radius_graph(pos, 4.0)
    assert torch.bincount(edge_index[1]).max() > 32
    assert torch.equal(edge_index, brute_force(pos, 4.0, torch.zeros(300, dtype=torch.long), False))


def test_empty_and_single_atom():
    assert radius_graph(torch.zeros(0, 3), 1.0).shape == (2, 0)
    assert radius_graph(torch.zeros(1, 3), 1.0).shape == (2, 0)
    assert radius_graph(torch.zeros(1, 3), 1.0, loop=True).tolist() == [[0], [0]]


def test_large_system_pure_torch_is_linear_memory():
    # 100,000 atoms at liquid-water density (0.1 atoms per cubic Angstrom).
    n = 100_000
    box = (n / 0.1) ** (1 / 3)
    pos = box * torch.rand(n, 3, generator=torch.Generator().manual_seed(7))
    edge_index = radius_graph(pos, 3.0, backend="torch")
    expected_per_atom = 0.1 * 4 / 3 * torch.pi * 3.0 ** 3
    assert abs(edge_index.size(1) / n - expected_per_atom) / expected_per_atom < 0.15
    sample = torch.randint(edge_index.size(1), (1000,))
    assert ((pos[edge_index[0, sample]] - pos[edge_index[1, sample]]).norm(dim=-1) < 3.0).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(pos=torch.zeros(4, 2)), "pos"),
    (dict(pos=torch.tensor([[0.0, float("nan"), 0.0]])), "NaN"),
    (dict(pos=torch.zeros(4, 3), batch=torch.zeros(3, dtype=torch.long)), "batch"),
    (dict(pos=torch.zeros(4, 3), r=-1.0), "'r'"),
    (dict(pos=torch.zeros(4, 3), max_num_neighbors=0), "max_num_neighbors"),
    (dict(pos=torch.zeros(4, 3), backend="kdtree"), "backend"),
])
def test_bad_input(kwargs, match):
    kwargs.setdefault("r", 1.0)
    with pytest.raises(ValueError, match=match):
        radius_graph(**kwargs)


def test_module_form():
    pos, batch = cloud(50, seed=8)
    graph = RadiusGraph(2.0)
    assert torch.equal(graph(pos, batch), radius_graph(pos, 2.0, batch))
    assert "cutoff=2.0" in repr(graph)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("seed", [0, 1])
def test_cuda_edges_equal_cpu(seed, monkeypatch):
    pos, batch = cloud(3000, seed, graphs=4, box=15.0)
    expected = radius_graph(pos, 2.0, batch, backend="torch")
    out = radius_graph(pos.cuda(), 2.0, batch.cuda())  # auto: whatever runs on CUDA
    assert out.is_cuda and torch.equal(out.cpu(), expected)
    monkeypatch.setattr(rg, "MAX_CANDIDATE_PAIRS", 5000)
    assert torch.equal(radius_graph(pos.cuda(), 2.0, batch.cuda(), backend="torch").cpu(),
                       expected)


@needs_cluster
def test_spatial_order_for_torch_cluster_gives_the_same_edges(monkeypatch):
    pos, batch = cloud(600, seed=4, graphs=3, box=8.0)
    pos[batch == 1] += 1e5  # far apart graphs: a coarsened ordering grid
    expected = brute_force(pos, 2.0, batch, loop=False)
    monkeypatch.setattr(rg, "SPATIAL_SORT_MIN_ATOMS", 0)
    for loop in (False, True):
        out = radius_graph(pos, 2.0, batch, loop=loop, backend="torch_cluster")
        assert torch.equal(out, brute_force(pos, 2.0, batch, loop))
    assert torch.equal(radius_graph(pos, 2.0, batch, backend="torch"), expected)
