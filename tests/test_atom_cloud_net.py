import pytest
import torch
from torch_geometric.data import Batch, Data

from acn_pyg import AtomCloudNet

from molecules import random_molecule, random_orthogonal

DT = torch.float64
SMALL = dict(hidden_channels=16, num_layers=2, cutoff=3.0, radial_hidden=16)
VARIANTS = {
    "scalars": dict(SMALL),
    "vectors": dict(SMALL, hidden_irreps="16x0e+4x1o+2x2e"),
    "products": dict(SMALL, hidden_irreps="16x0e+4x1o+2x2e", product_channels=2),
    "triples, by element": dict(SMALL, hidden_irreps="16x0e+4x1o+2x2e", product_channels=2,
                                product_correlation=3, element_dependent=True),
    "product basis": dict(SMALL, hidden_irreps="16x0e+4x1o+2x2e", product_channels=2,
                          product_basis=True, element_dependent=True,
                          scalar_activation=False, input_linear=True,
                          self_interaction_rank=2),
}


def model(**kwargs):
    return AtomCloudNet(**{**SMALL, **kwargs})


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("reflect", [False, True])
def test_invariant_to_rotation_reflection_translation(variant, reflect, molecule):
    net = AtomCloudNet(**VARIANTS[variant])
    z, pos = molecule
    rot = random_orthogonal(seed=3, reflect=reflect)
    moved = pos @ rot.T + torch.tensor([4.0, -2.0, 7.5], dtype=DT)
    torch.testing.assert_close(net(z, moved), net(z, pos), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pooling", ["add", "mean", "max", "power"])
def test_permutation_invariant(pooling, molecule):
    net = model(pooling=pooling)
    z, pos = molecule
    perm = torch.randperm(z.numel())
    torch.testing.assert_close(net(z[perm], pos[perm]), net(z, pos), rtol=1e-10, atol=1e-10)


def test_atom_readout_is_permutation_equivariant(molecule):
    net = model(readout="atom", out_channels=3)
    z, pos = molecule
    perm = torch.randperm(z.numel())
    out = net(z, pos)
    assert out.shape == (z.numel(), 3)
    torch.testing.assert_close(net(z[perm], pos[perm]), out[perm], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("pooling", ["add", "mean", "max", "power"])
def test_batch_equals_one_by_one(variant, pooling, batch_of_molecules):
    net = AtomCloudNet(**VARIANTS[variant], pooling=pooling)
    mols, z, pos, batch = batch_of_molecules
    batched = net(z, pos, batch)
    single = torch.cat([net(zm, pm) for zm, pm in mols])
    assert batched.shape == (3, 1)
    torch.testing.assert_close(batched, single, rtol=1e-10, atol=1e-10)


def test_works_on_pyg_batches(batch_of_molecules):
    mols, z, pos, batch = batch_of_molecules
    data = Batch.from_data_list([Data(z=zm, pos=pm) for zm, pm in mols])
    net = model()
    torch.testing.assert_close(net(data.z, data.pos, data.batch), net(z, pos, batch))


def test_far_apart_molecules_add_up():
    net = model(pooling="add")
    (z1, p1), (z2, p2) = random_molecule(6, seed=1), random_molecule(8, seed=2)
    both = net(torch.cat([z1, z2]), torch.cat([p1, p2 + torch.tensor([50.0, 0, 0], dtype=DT)]))
    torch.testing.assert_close(both, net(z1, p1) + net(z2, p2), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_forces_match_finite_differences(variant):
    net = AtomCloudNet(**VARIANTS[variant])
    z, pos = random_molecule(6, seed=5)
    pos.requires_grad_(True)
    forces = -torch.autograd.grad(net(z, pos).sum(), pos)[0]
    h = 1e-5
    numeric = torch.zeros_like(pos)
    with torch.no_grad():
        for a in range(pos.size(0)):
            for c in range(3):
                plus, minus = pos.clone(), pos.clone()
                plus[a, c] += h
                minus[a, c] -= h
                numeric[a, c] = -(net(z, plus) - net(z, minus)).sum() / (2 * h)
    torch.testing.assert_close(forces, numeric, rtol=1e-6, atol=1e-8)


def test_continuous_as_an_atom_crosses_the_cutoff():
    net = model()
    z = torch.tensor([6, 1, 8])
    base = torch.tensor([[0.0, 0, 0], [1.1, 0, 0], [0.0, 0, 0]], dtype=DT)
    outs, grads = [], []
    for d in (3.0 - 1e-6, 3.0 + 1e-6):
        pos = base.clone()
        pos[2, 1] = d
        pos.requires_grad_(True)
        e = net(z, pos)
        outs.append(e.detach())
        grads.append(torch.autograd.grad(e.sum(), pos)[0])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-9, rtol=0)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=0)


def test_mean_std_atomref_like_schnet(molecule):
    z, pos = molecule
    atomref = torch.zeros(10)
    atomref[[1, 6, 7, 8, 9]] = torch.tensor([-0.5, -37.8, -54.6, -75.0, -99.7])
    plain = model()
    shifted = model(mean=2.0, std=3.0, atomref=atomref)
    shifted.load_state_dict(plain.state_dict(), strict=False)
    torch.manual_seed(0)
    expected = 3.0 * plain(z, pos) + 2.0 * z.numel() + atomref[z].sum()
    torch.testing.assert_close(shifted(z, pos), expected)


def test_extra_features_are_used(molecule):
    z, pos = molecule
    net = model(num_extra_features=2)
    extra = torch.randn(z.numel(), 2)
    assert not torch.allclose(net(z, pos, extra_features=extra),
                              net(z, pos, extra_features=2 * extra))
    with pytest.raises(ValueError, match="extra_features"):
        net(z, pos)
    with pytest.raises(ValueError, match="extra_features"):
        net(z, pos, extra_features=extra[:, :1])


def test_single_atom_and_no_atoms():
    net = model()
    assert net(torch.tensor([8]), torch.zeros(1, 3)).shape == (1, 1)
    assert net(torch.zeros(0, dtype=torch.long), torch.zeros(0, 3)).shape == (0, 1)
    empty = model(readout="atom")(torch.zeros(0, dtype=torch.long), torch.zeros(0, 3))
    assert empty.shape == (0, 1)


@pytest.mark.parametrize("make_args, match", [
    (lambda z, pos: (z, pos[:, :2]), r"'pos' must have shape \[num_atoms, 3\]"),
    (lambda z, pos: (z, pos.masked_fill(pos > 0.5, float("nan"))), "'pos' contains NaN"),
    (lambda z, pos: (z, pos.masked_fill(pos > 0.5, float("inf"))), "'pos' contains NaN"),
    (lambda z, pos: (z.masked_fill(z == z[0], 0), pos),
     r"'z' must hold atomic numbers in 1\.\.100"),
    (lambda z, pos: (z.masked_fill(z == z[0], 101), pos), r"'z' must hold atomic numbers"),
    (lambda z, pos: (z.double(), pos), "'z' must hold integer"),
    (lambda z, pos: (z[:-1], pos), "'z' has 11 atoms but 'pos' has 12"),
    (lambda z, pos: (z, pos, torch.zeros(5, dtype=torch.long)), "'batch' must have shape"),
    (lambda z, pos: (z, pos.to("meta")), "device"),
    (lambda z, pos: (z.to("meta"), pos.to("meta")),
     "'z' is on meta but the AtomCloudNet's parameters are on cpu"),
    # The tests build modules in float64 (conftest).
    (lambda z, pos: (z, pos.float()),
     r"'pos' is torch.float32 but the AtomCloudNet's parameters are torch.float64; "
     r"convert the inputs \(.to\(torch.float64\)\) or the model"),
])
def test_bad_input(make_args, match, molecule):
    net = model()
    with pytest.raises(ValueError, match=match):
        net(*make_args(*molecule))


@pytest.mark.parametrize("kwargs, match", [
    (dict(pooling="sum"), "pooling"),
    (dict(readout="graph"), "readout"),
    (dict(hidden_irreps="8x1o"), "hidden_irreps"),
    (dict(hidden_irreps="16x0e+2x3o"), "lmax"),
    (dict(atomref=torch.zeros(200)), "atomref"),
    (dict(product_correlation=3), "needs the products"),
    (dict(product_channels=2, product_correlation=4), "product_correlation"),
    (dict(embedding_std=0.0), "embedding_std"),
    (dict(embedding_std=float("nan")), "embedding_std"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        model(**kwargs)


def test_defaults_and_repr(molecule):
    net = AtomCloudNet()
    z, pos = molecule
    assert net(z, pos).shape == (1, 1)
    assert repr(net).startswith("AtomCloudNet(hidden_irreps=64x0e, num_layers=3, cutoff=5.0")


def test_custom_interaction_graph_is_used(molecule):
    z, pos = molecule
    calls = []

    def graph(pos, batch):
        calls.append(pos.size(0))
        n = pos.size(0)
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        mask = i != j
        return torch.stack([j[mask], i[mask]])

    net = model(interaction_graph=graph)
    net(z, pos)
    assert calls == [z.numel()]


def test_float32_training_step(batch_of_molecules):
    torch.set_default_dtype(torch.float32)
    _, z, pos, batch = batch_of_molecules
    net = model(hidden_irreps="16x0e+4x1o")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    target = torch.randn(3, 1)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = (net(z, pos.float(), batch) - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_torch_compile_equals_eager(batch_of_molecules):
    _, z, pos, batch = batch_of_molecules
    net = model(hidden_irreps="16x0e+4x1o", product_channels=2)
    compiled = torch.compile(net, backend="inductor")
    torch.testing.assert_close(compiled(z, pos, batch), net(z, pos, batch), rtol=1e-9, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(batch_of_molecules):
    _, z, pos, batch = batch_of_molecules
    net = model(hidden_irreps="16x0e+4x1o")
    expected = net(z, pos, batch)
    out = net.cuda()(z.cuda(), pos.cuda(), batch.cuda())
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-8, atol=1e-8)
    rot = random_orthogonal(seed=1, reflect=True).cuda()
    torch.testing.assert_close(net(z.cuda(), pos.cuda() @ rot.T, batch.cuda()), out,
                               rtol=1e-8, atol=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forces_and_many_body_match_cpu(batch_of_molecules):
    _, z, pos, batch = batch_of_molecules
    net = model(hidden_irreps="16x0e+4x1o", many_body=True)

    def energy_and_forces(device):
        p = pos.to(device).requires_grad_(True)
        e = net.to(device)(z.to(device), p, batch.to(device))
        (f,) = torch.autograd.grad(-e.sum(), p)
        return e.cpu(), f.cpu()

    e_cpu, f_cpu = energy_and_forces("cpu")
    e_gpu, f_gpu = energy_and_forces("cuda")
    torch.testing.assert_close(e_gpu, e_cpu, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(f_gpu, f_cpu, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("pooling", ["add", "mean"])
def test_atom_features_are_what_the_readout_reads(pooling, batch_of_molecules):
    from torch_geometric.nn import global_add_pool, global_mean_pool

    _, z, pos, batch = batch_of_molecules
    net = model(pooling=pooling, mean=0.5, std=2.0, many_body=True)
    a, edge_index = net.atom_features(z, pos, batch)
    assert a.shape == (z.numel(), net.hidden_channels)
    assert edge_index.size(0) == 2 and bool((batch[edge_index[0]] == batch[edge_index[1]]).all())
    if pooling == "add":
        expected = global_add_pool(2.0 * net.output_mlp(a) + 0.5, batch)
    else:
        expected = 2.0 * net.output_mlp(global_mean_pool(a, batch)) + 0.5
    torch.testing.assert_close(net(z, pos, batch), expected, rtol=1e-12, atol=1e-12)
    # Invariant, and checked like forward's inputs.
    rot = random_orthogonal(seed=5, reflect=True)
    torch.testing.assert_close(net.atom_features(z, pos @ rot.T, batch)[0], a,
                               rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="pos"):
        net.atom_features(z, pos[:, :2], batch)


def test_z_of_another_integer_dtype_and_a_bad_user_graph_are_named(molecule):
    z, pos = molecule
    net = model()
    for dtype in (torch.uint8, torch.int16):
        with pytest.raises(ValueError, match=rf"'z' must hold .* \(got {dtype}; convert"):
            net(z.to(dtype), pos)
    torch.testing.assert_close(net(z.int(), pos), net(z, pos))

    def out_of_range(pos, batch):
        return torch.tensor([[0, 1], [1, pos.size(0)]])
    bad = model(interaction_graph=out_of_range)
    with pytest.raises(ValueError, match="interaction_graph's edge_index' holds atom indices "
                                         r"outside 0\.\.11"):
        bad(z, pos)
    with pytest.raises(ValueError, match=r"shape \[2, num_edges\]"):
        model(interaction_graph=lambda pos, batch: torch.zeros(3, 2, dtype=torch.long))(z, pos)


@pytest.mark.parametrize("kwargs", [
    {},
    {"num_layers": 5},
    {"hidden_channels": 16},
    {"hidden_channels": 128},
    {"hidden_irreps": "64x0e+16x1o+16x2e"},
    {"product_channels": 8},
    {"product_channels": 8, "product_correlation": 3},
])
def test_the_cloud_starts_near_the_self_interaction(kwargs):
    """At initialisation every layer's cloud is within a few times the scale
    of its input (the self-interaction's), at any depth and width, with and
    without directions carried between layers or products."""
    mols = [random_molecule(18, seed=s) for s in range(8)]
    z, pos = torch.cat([m[0] for m in mols]), torch.cat([m[1] for m in mols])
    batch = torch.arange(8).repeat_interleave(18)
    torch.manual_seed(0)
    model = AtomCloudNet(**kwargs)
    ratios, products = [], []

    def record(conv):
        def hook(module, inputs, output):
            parts = conv.linear_input_parts(inputs[0])
            x = parts["input"][0].pow(2).mean().sqrt()
            ratios.append(float(torch.cat(parts["cloud"], -1).pow(2).mean().sqrt() / x))
            if parts["products"]:
                products.append(float(parts["products"][0].pow(2).mean().sqrt() / x))
        return hook
    for conv in model.convs:
        conv.linear.register_forward_hook(record(conv))
    with torch.no_grad():
        model(z, pos, batch)
    assert len(ratios) == model.num_layers
    assert all(0.1 < r < 1.0 for r in ratios), ratios
    assert all(0.03 < r < 1.0 for r in products), products


def _randomize_element_weights(net, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in net.convs:
            for lin in (conv.self_weights, conv.product.element_weights):
                lin.weight.copy_(0.3 * torch.randn(lin.weight.shape, generator=gen))


def test_element_dependent_weights_start_as_the_same_function(batch_of_molecules):
    """At one seed a model with element-dependent weights is the same function
    as without them until its factors move; then it stays invariant,
    permutation-invariant and batch-consistent, and it depends on them."""
    mols, z, pos, batch = batch_of_molecules
    kwargs = dict(SMALL, hidden_irreps="16x0e+4x1o+2x2e", product_channels=2,
                  product_correlation=3)
    torch.manual_seed(5)
    plain = AtomCloudNet(**kwargs)
    torch.manual_seed(5)
    net = AtomCloudNet(**kwargs, element_dependent=True)
    torch.testing.assert_close(net(z, pos, batch), plain(z, pos, batch), rtol=1e-12, atol=1e-12)
    _randomize_element_weights(net)
    y = net(z, pos, batch)
    assert (y - plain(z, pos, batch)).abs().max() > 1e-3
    rot = random_orthogonal(seed=1, reflect=True)
    torch.testing.assert_close(net(z, pos @ rot.T, batch), y, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.cat([net(zm, pm) for zm, pm in mols]), y,
                               rtol=1e-10, atol=1e-10)
    zm, pm = mols[1]
    perm = torch.randperm(zm.numel())
    torch.testing.assert_close(net(zm[perm], pm[perm]), y[1:2], rtol=1e-10, atol=1e-10)


def test_without_scalar_activation_the_layers_pass_scalars_unchanged(molecule):
    """scalar_activation=False: the gates leave the scalars as the linear map
    gave them (no SiLU), still gate the l > 0 irreps, and the model stays
    invariant."""
    from acn_pyg.nn.gate import Gate
    gate = Gate("3x0e+2x1o", scalar_activation=False)
    x = torch.randn(4, gate.irreps_in.dim)
    y = gate(x)
    torch.testing.assert_close(y[:, :3], x[:, :3])
    torch.testing.assert_close(y[:, 3:], Gate("3x0e+2x1o")(x)[:, 3:])
    z, pos = molecule
    torch.manual_seed(2)
    net = model(hidden_irreps="16x0e+4x1o", product_channels=2, scalar_activation=False)
    torch.manual_seed(2)
    silu = model(hidden_irreps="16x0e+4x1o", product_channels=2)
    assert not torch.allclose(net(z, pos), silu(z, pos))
    rot = random_orthogonal(seed=4, reflect=True)
    torch.testing.assert_close(net(z, pos @ rot.T), net(z, pos), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("weight_norm", [False, True])
def test_embedding_std_scales_the_initial_embedding_only(weight_norm, batch_of_molecules):
    """At one seed, embedding_std=c gives c times the embedding and every other
    weight unchanged, also after reset_parameters(); the clouds (their
    neighbours' features) start c times smaller and the model stays invariant."""
    _, z, pos, batch = batch_of_molecules
    kwargs = dict(SMALL, product_channels=4, product_basis=True, weight_norm=weight_norm)
    torch.manual_seed(2)
    plain = AtomCloudNet(**kwargs)
    torch.manual_seed(2)
    net = AtomCloudNet(**kwargs, embedding_std=0.25)
    zs = torch.arange(1, 10)
    for _ in range(2):  # as built, then redrawn
        torch.testing.assert_close(net.embedding(zs), 0.25 * plain.embedding(zs))
        others = [(k, v) for k, v in net.state_dict().items() if not k.startswith("embedding.")]
        ref = plain.state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in others)
        torch.manual_seed(3)
        net.reset_parameters()
        torch.manual_seed(3)
        plain.reset_parameters()
    y = net(z, pos, batch)
    assert (y - plain(z, pos, batch)).abs().max() > 1e-6
    rot = random_orthogonal(seed=4, reflect=True)
    torch.testing.assert_close(net(z, pos @ rot.T, batch), y, rtol=1e-10, atol=1e-10)


def test_without_residual_connections_a_layer_output_replaces_its_input(batch_of_molecules,
                                                                        tmp_path):
    """residual=False draws the same weights; the last layer's output alone
    reaches the readout (a last layer that outputs zero leaves a model that no
    longer sees the geometry, where the residual model still does); the model
    stays invariant and survives a save and load."""
    _, z, pos, batch = batch_of_molecules
    kwargs = dict(SMALL, product_channels=4, product_basis=True, element_dependent=True,
                  self_interaction_rank=2, weight_norm=False)
    torch.manual_seed(2)
    plain = AtomCloudNet(**kwargs)
    torch.manual_seed(2)
    net = AtomCloudNet(**kwargs, residual=False)
    ref = plain.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in net.state_dict().items())
    y = net(z, pos, batch)
    assert (y - plain(z, pos, batch)).abs().max() > 1e-6
    rot = random_orthogonal(seed=4, reflect=True)
    torch.testing.assert_close(net(z, pos @ rot.T, batch), y, rtol=1e-10, atol=1e-10)
    path = str(tmp_path / "model.pt")
    net.save(path)
    torch.testing.assert_close(AtomCloudNet.load(path)(z, pos, batch), y)
    moved = pos + 0.05 * torch.randn_like(pos)
    for model in (net, plain):
        last = model.convs[-1]
        with torch.no_grad():
            for module in (last.linear, last.self_mix):
                for p in module.parameters():
                    p.zero_()
    torch.testing.assert_close(net(z, moved, batch), net(z, pos, batch))
    assert (plain(z, moved, batch) - plain(z, pos, batch)).abs().max() > 1e-6
