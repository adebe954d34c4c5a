"""Atomic and tensorial outputs (acn_pyg.nn.heads through AtomCloudNet's
output=): charges sum to the total charge, a predicted dipole rotates as
R mu and a predicted tensor as R A R^T (rotations and reflections), and all
are permutation- and batching-consistent."""
import pytest
import torch
from e3nn import o3

from molecules import random_molecule

from acn_pyg import AtomCloudNet
from acn_pyg.nn import total_charge_correction


def _model(output, **kwargs):
    torch.manual_seed(0)
    args = dict(hidden_channels=16, num_layers=2, cutoff=4.0, output=output)
    args.update(kwargs)
    return AtomCloudNet(**args).eval()


def _two_molecules():
    z1, p1 = random_molecule(7, seed=1)
    z2, p2 = random_molecule(5, seed=2)
    z, pos = torch.cat([z1, z2]), torch.cat([p1, p2 + 20.0])
    return z, pos, torch.tensor([0] * 7 + [1] * 5)


@pytest.mark.parametrize("hidden_irreps", [None, "16x0e+4x1o+4x2e"])
@pytest.mark.parametrize("reflect", [False, True])
def test_a_dipole_rotates_and_reflects_with_the_molecule(hidden_irreps, reflect):
    model = _model("dipole", hidden_irreps=hidden_irreps)
    z, pos, batch = _two_molecules()
    rot = o3.rand_matrix(dtype=torch.float64)
    if reflect:
        rot = -rot
    mu = model(z, pos, batch)
    assert mu.shape == (2, 3) and mu.abs().max() > 1e-3
    torch.testing.assert_close(model(z, pos @ rot.T + 1.5, batch), mu @ rot.T, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("hidden_irreps", [None, "16x0e+4x1o+4x2e"])
@pytest.mark.parametrize("reflect", [False, True])
def test_a_tensor_transforms_as_r_a_rt(hidden_irreps, reflect):
    model = _model("tensor", hidden_irreps=hidden_irreps, atomref=torch.linspace(1, 2, 10))
    z, pos, batch = _two_molecules()
    rot = o3.rand_matrix(dtype=torch.float64)
    if reflect:
        rot = -rot
    a = model(z, pos, batch)
    assert a.shape == (2, 3, 3)
    torch.testing.assert_close(a, a.transpose(1, 2))
    anisotropic = a - a.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None] * torch.eye(3)
    assert anisotropic.abs().max() > 1e-4  # not only an isotropic part
    torch.testing.assert_close(model(z, pos @ rot.T - 2.0, batch), rot @ a @ rot.T, rtol=1e-5,
                               atol=1e-5)


def test_charges_sum_to_the_total_charge_and_are_invariant():
    model = _model("charges", atomref=torch.linspace(-0.5, 0.5, 10))
    z, pos, batch = _two_molecules()
    q = model(z, pos, batch)
    assert q.shape == (12, 1)
    torch.testing.assert_close(torch.zeros(2).index_add(0, batch, q.view(-1)), torch.zeros(2),
                               atol=1e-12, rtol=0)
    charged = model(z, pos, batch, total_charge=torch.tensor([1.0, -2.0]))
    torch.testing.assert_close(torch.zeros(2).index_add(0, batch, charged.view(-1)),
                               torch.tensor([1.0, -2.0]))
    rot = o3.rand_matrix(dtype=torch.float64)
    torch.testing.assert_close(model(z, -pos @ rot.T, batch), q)
    free = _model("charges", charge_constraint=False)
    assert abs(float(free(z, pos, batch).sum())) > 1e-6  # the constraint did something


def test_the_charge_correction_spreads_the_excess_evenly():
    q = torch.tensor([[0.3], [0.1], [0.2], [0.0]])
    out = total_charge_correction(q, torch.tensor([0, 0, 1, 1]), 2, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(out.view(-1), torch.tensor([0.6, 0.4, 0.1, -0.1]))


@pytest.mark.parametrize("output", ["charges", "dipole", "tensor"])
def test_outputs_follow_a_permutation_and_batch_as_alone(output):
    model = _model(output)
    z, pos, batch = _two_molecules()
    both = model(z, pos, batch)
    alone = [model(z[batch == g], pos[batch == g]) for g in range(2)]
    torch.testing.assert_close(torch.cat(alone), both, rtol=1e-6, atol=1e-8)
    perm = torch.randperm(12)
    permuted = model(z[perm], pos[perm], batch[perm])
    torch.testing.assert_close(permuted, both[perm] if output == "charges" else both,
                               rtol=1e-6, atol=1e-8)


def test_bad_output_settings_are_refused():
    with pytest.raises(ValueError, match="'output' must be one of"):
        AtomCloudNet(output="vector")
    with pytest.raises(ValueError, match="needs lmax >= 2"):
        AtomCloudNet(output="tensor", lmax=1)
    with pytest.raises(ValueError, match="own readout"):
        AtomCloudNet(output="dipole", readout="atom")


def test_a_model_with_a_head_saves_and_loads(tmp_path):
    from acn_pyg import load_model, save_model
    torch.set_default_dtype(torch.float32)
    model = _model("tensor", atomref=torch.linspace(1, 2, 10))
    save_model(str(tmp_path / "t.pt"), model, target="polarizability", unit="a0^3")
    z, pos, batch = _two_molecules()
    pos = pos.float()
    with torch.no_grad():
        torch.testing.assert_close(load_model(str(tmp_path / "t.pt"))(z, pos, batch),
                                   model(z, pos, batch))


@pytest.mark.parametrize("output", ["tensor", "charges", "dipole"])
def test_a_head_starts_from_the_layers_and_readout_of_the_scalar_model(output):
    """Built at one seed, a model with a head and the scalar model hold the
    same layers, atom MLP and readout MLP: the tensor head's isotropic part
    is the scalar model's prediction, so the two can be compared seed by
    seed."""
    kwargs = dict(hidden_channels=16, num_layers=2, product_channels=2, std=2.0,
                  atomref=torch.linspace(0.0, 1.0, 10))
    torch.manual_seed(5)
    scalar = AtomCloudNet(**kwargs)
    torch.manual_seed(5)
    headed = AtomCloudNet(**kwargs, output=output)
    s, h = scalar.state_dict(), headed.state_dict()
    readout = {"charges": "head.mlp.", "dipole": "head.charges.mlp.",
               "tensor": "head.isotropic."}[output]
    shared = [k for k in h if k.replace(readout, "output_mlp.") in s]
    assert any(k.startswith("convs.1.") for k in shared) and any(k.startswith(readout)
                                                                 for k in shared)
    for k in shared:
        a, b = h[k], s[k.replace(readout, "output_mlp.")]
        if a.shape == b.shape:
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
        else:  # the last layer's linear: its scalar block comes first
            torch.testing.assert_close(a[..., :b.size(-1)], b, rtol=0, atol=0, msg=k)
    if output == "tensor":
        z, pos = random_molecule(9, seed=1, dtype=torch.get_default_dtype())
        trace = torch.diagonal(headed(z, pos), dim1=-2, dim2=-1).sum(-1) / 3
        torch.testing.assert_close(trace, scalar(z, pos).view(-1))


def test_the_anisotropic_gradient_scales_only_the_traceless_pull_on_the_layers():
    """anisotropic_gradient leaves the prediction alone; the traceless part's
    gradient reaching the layers is scaled by it, the head's own traceless
    weights get all of it, and the isotropic part's gradient is untouched."""
    z, pos = random_molecule(8, seed=3, dtype=torch.get_default_dtype())
    grads, outputs = {}, {}
    for g in (1.0, 0.25):
        torch.manual_seed(2)
        model = AtomCloudNet(hidden_channels=16, num_layers=2, cutoff=4.0, output="tensor",
                             anisotropic_gradient=g)
        a = model(z, pos)[0]
        outputs[g] = a.detach()
        traceless = a - torch.eye(3) * a.diagonal().mean()
        for part, value in (("iso", a.diagonal().sum()), ("aniso", (traceless * torch.randn(
                3, 3, generator=torch.Generator().manual_seed(0))).sum())):
            model.zero_grad()
            value.backward(retain_graph=True)
            grads[g, part] = {k: p.grad.clone() for k, p in model.named_parameters()
                              if p.grad is not None}
    torch.testing.assert_close(outputs[1.0], outputs[0.25])
    layer = "convs.0.linear"
    layer_keys = [k for k in grads[1.0, "aniso"] if k.startswith(layer)]
    head_keys = [k for k in grads[1.0, "aniso"] if k.startswith("head.anisotropic")]
    assert layer_keys and head_keys
    for k in layer_keys:
        torch.testing.assert_close(grads[0.25, "aniso"][k], 0.25 * grads[1.0, "aniso"][k])
    for k in head_keys:
        torch.testing.assert_close(grads[0.25, "aniso"][k], grads[1.0, "aniso"][k])
    for k in grads[1.0, "iso"]:
        torch.testing.assert_close(grads[0.25, "iso"][k], grads[1.0, "iso"][k])
    with pytest.raises(ValueError, match="output='tensor' only"):
        AtomCloudNet(output="dipole", anisotropic_gradient=0.5)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        AtomCloudNet(output="tensor", anisotropic_gradient=2.0)
