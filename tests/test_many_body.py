import itertools
import math

import pytest
import torch

from acn_pyg import AtomCloudNet
from acn_pyg.nn import ManyBodyTerms, signed_log1p
from acn_pyg.nn import many_body
from acn_pyg.transforms import ManyBodyFeatures
from torch_geometric.data import Batch, Data

from molecules import random_molecule, random_orthogonal


def brute_force(z, pos, cutoff=None):
    """The formulas of the issue, written as loops."""
    n = z.numel()
    z = z.tolist()
    out = torch.zeros(n, 3, dtype=torch.float64)

    def f(r):
        if cutoff is None:
            return 1.0
        x = r / cutoff
        return 0.0 if x >= 1 else 1 - 28 * x ** 6 + 48 * x ** 7 - 21 * x ** 8

    def dist(a, b):
        return float((pos[a] - pos[b]).norm())

    def angle(at, p, q):
        u, v = pos[p] - pos[at], pos[q] - pos[at]
        return math.acos(float(u @ v / (u.norm() * v.norm())))

    for i in range(n):
        for j in range(n):
            if j != i:
                r = dist(i, j)
                out[i, 0] += z[i] * z[j] / r * f(r)
                out[i, 1] += z[i] * z[j] / r ** 6 * f(r)
        for j, k in itertools.combinations([a for a in range(n) if a != i], 2):
            a, b, c = angle(i, j, k), angle(j, i, k), angle(k, i, j)
            rij, rjk, rki = dist(i, j), dist(j, k), dist(k, i)
            out[i, 2] += (z[i] * z[j] * z[k] * (1 + math.cos(a) * math.cos(b) * math.cos(c))
                          / (rij * rjk * rki) ** 3 * f(rij) * f(rki))
    return out


@pytest.mark.parametrize("cutoff", [None, 2.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_raw_values_match_brute_force(cutoff, seed):
    z, pos = random_molecule(9, seed=seed)
    out = ManyBodyTerms(cutoff=cutoff, normalize=False)(z, pos)
    torch.testing.assert_close(out, brute_force(z, pos, cutoff), rtol=1e-10, atol=1e-12)


def test_term_selection_order_and_normalisation():
    z, pos = random_molecule(7, seed=2)
    raw = ManyBodyTerms(normalize=False)(z, pos)
    out = ManyBodyTerms(terms=("atm", "coulomb"))(z, pos)
    torch.testing.assert_close(out, signed_log1p(raw[:, [2, 0]]))
    x = torch.linspace(-50, 50, 1001)
    assert (signed_log1p(x).diff() > 0).all()


@pytest.mark.parametrize("cutoff", [None, 3.0])
@pytest.mark.parametrize("reflect", [False, True])
def test_invariant_to_rotation_reflection_translation_permutation(cutoff, reflect):
    z, pos = random_molecule(10, seed=3)
    terms = ManyBodyTerms(cutoff=cutoff)
    out = terms(z, pos)
    rot = random_orthogonal(seed=4, reflect=reflect)
    torch.testing.assert_close(terms(z, pos @ rot.T - 3.0), out, rtol=1e-10, atol=1e-10)
    perm = torch.randperm(10)
    torch.testing.assert_close(terms(z[perm], pos[perm]), out[perm], rtol=1e-10, atol=1e-10)


def test_transform_and_module_agree_and_batch_works(batch_of_molecules):
    mols, z, pos, batch = batch_of_molecules
    transform = ManyBodyFeatures(cutoff=None)
    singles = [transform(Data(z=zm, pos=pm)) for zm, pm in mols]
    assert singles[0].many_body.shape == (mols[0][0].numel(), 3)
    expected = torch.cat([d.many_body for d in singles])
    torch.testing.assert_close(ManyBodyTerms()(z, pos, batch), expected)
    batched = transform(Batch.from_data_list([Data(z=zm, pos=pm) for zm, pm in mols]))
    torch.testing.assert_close(batched.many_body, expected)
    assert "attr='many_body'" in repr(transform)


def test_transform_names_missing_attribute():
    with pytest.raises(ValueError, match="data.z"):
        ManyBodyFeatures()(Data(pos=torch.zeros(2, 3)))


def test_continuous_at_cutoff_and_far_molecules_independent():
    terms = ManyBodyTerms(cutoff=3.0, normalize=False)
    z = torch.tensor([6, 8, 1])
    vals = []
    for d in (3.0 - 1e-7, 3.0 + 1e-7):
        pos = torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [0, d, 0]])
        vals.append(terms(z, pos))
    torch.testing.assert_close(vals[0], vals[1], atol=1e-8, rtol=0)

    (z1, p1), (z2, p2) = random_molecule(5, seed=5), random_molecule(6, seed=6)
    both = terms(torch.cat([z1, z2]), torch.cat([p1, p2 + 50.0]))
    torch.testing.assert_close(both, torch.cat([terms(z1, p1), terms(z2, p2)]))


def test_gradients_match_finite_differences():
    z, pos = random_molecule(5, seed=7)
    terms = ManyBodyTerms(cutoff=3.0)
    pos.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: terms(z, p), (pos,))


def test_model_on_the_fly_many_body(molecule, batch_of_molecules):
    net = AtomCloudNet(hidden_channels=16, num_layers=1, many_body=("coulomb", "atm"))
    assert net.atom_mlp[0].in_features == 18
    z, pos = molecule
    rot = random_orthogonal(seed=8, reflect=True)
    torch.testing.assert_close(net(z, pos @ rot.T + 1.0), net(z, pos), rtol=1e-10, atol=1e-10)
    mols, zb, posb, batch = batch_of_molecules
    torch.testing.assert_close(net(zb, posb, batch), torch.cat([net(zm, pm) for zm, pm in mols]))
    pos.requires_grad_(True)
    forces = torch.autograd.grad(net(z, pos).sum(), pos)[0]
    assert torch.isfinite(forces).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="terms"):
        ManyBodyTerms(terms=("coulomb", "dipole"))
    with pytest.raises(ValueError, match="cutoff"):
        ManyBodyTerms(cutoff=-1.0)
    with pytest.raises(ValueError, match="'z'"):
        ManyBodyTerms()(torch.tensor([0, 1]), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="chunk_size"):
        ManyBodyTerms(chunk_size=0)


@pytest.mark.parametrize("cutoff", [None, 2.5])
def test_chunked_sums_and_forces_equal_unchunked(cutoff, batch_of_molecules):
    _, z, pos, batch = batch_of_molecules
    perm = torch.randperm(z.numel(), generator=torch.Generator().manual_seed(0))

    def sums_and_forces(chunk_size, order):
        p = pos[order].clone().requires_grad_(True)
        out = ManyBodyTerms(cutoff=cutoff, chunk_size=chunk_size)(z[order], p, batch[order])
        return out, torch.autograd.grad(out.pow(2).sum(), p)[0]

    whole = sums_and_forces(10 ** 9, torch.arange(z.numel()))
    # An unsorted batch vector, chunks of one pair or triple and more.
    for chunk_size in (1, 3, 40, 10 ** 9):
        out, forces = sums_and_forces(chunk_size, perm)
        torch.testing.assert_close(out, whole[0][perm], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(forces, whole[1][perm], rtol=1e-10, atol=1e-10)


def test_large_molecule_summed_in_bounded_chunks(monkeypatch):
    # 300 atoms: 13 million triples, over a gigabyte if made at once.
    grid = torch.stack(torch.meshgrid(*[torch.arange(7.0)] * 3, indexing="ij"), -1).view(-1, 3)
    g = torch.Generator().manual_seed(13)
    pos = 1.5 * grid[:300] + 0.2 * torch.rand(300, 3, generator=g)
    z = torch.randint(1, 10, (300,), generator=g)
    sizes = []

    def recorded(count, total=None):
        owner, within = expand_ranges(count, total)
        sizes.append(owner.numel())
        return owner, within

    expand_ranges = many_body.expand_ranges
    monkeypatch.setattr(many_body, "expand_ranges", recorded)
    small = ManyBodyTerms(normalize=False, chunk_size=2 ** 14)(z, pos)
    # Every pair or triple list holds at most the chunk plus one atom's pairs
    # or one pair's partners.
    assert len(sizes) > 100 and max(sizes) <= 2 ** 14 + 300
    sizes.clear()
    large = ManyBodyTerms(normalize=False, chunk_size=2 ** 17)(z, pos)
    assert max(sizes) <= 2 ** 17 + 300
    torch.testing.assert_close(small, large, rtol=1e-12, atol=0)


@pytest.mark.parametrize("cutoff", [None, 3.0])
def test_coincident_atoms_raise_the_convolutions_error(cutoff):
    z, pos = random_molecule(6, seed=9)
    pos[4] = pos[1]
    with pytest.raises(ValueError) as conv_error:
        AtomCloudNet(hidden_channels=8, num_layers=1)(z, pos)
    with pytest.raises(ValueError, match="two atoms at the same position") as error:
        ManyBodyTerms(cutoff=cutoff)(z, pos)
    assert str(error.value) == str(conv_error.value)
    with pytest.raises(ValueError, match="same position"):
        ManyBodyFeatures(cutoff=cutoff)(Data(z=z, pos=pos))
    # Atoms of two molecules of a batch are never a pair.
    batch = torch.tensor([0, 0, 0, 0, 1, 1])
    assert torch.isfinite(ManyBodyTerms(cutoff=cutoff)(z, pos, batch)).all()


def test_finite_in_float32_for_atoms_millions_of_angstrom_apart():
    parts = [random_molecule(4, seed=s) for s in (10, 11, 12)]
    z = torch.cat([zp for zp, _ in parts])
    corners = 2e6 * torch.tensor([[1.0, 0, 0], [-1, 1, 0], [0, -1, 1]])
    pos = torch.cat([pp + c for (_, pp), c in zip(parts, corners)]).float()
    terms = ManyBodyTerms(normalize=False)
    out = terms(z, pos)
    assert torch.isfinite(out).all()
    # The float64 sums of the same (rounded) coordinates.
    torch.testing.assert_close(out.double(), terms(z, pos.double()), rtol=1e-5, atol=1e-30)
