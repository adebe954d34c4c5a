"""Denoising as an auxiliary task: the head's symmetries, the noise, the loss,
the training option end to end (with resume)."""
import json
import pathlib
import sys

import pytest
import torch
from torch_geometric.utils import scatter

from acn_pyg.nn import DenoisingHead, centered_noise, denoising_loss

from molecules import random_orthogonal

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import qm9 as example  # noqa: E402

from test_qm9_example import tiny_args  # noqa: E402


def test_head_is_equivariant_invariant_to_translation_and_permutation(batch_of_molecules):
    _, z, pos, batch = batch_of_molecules
    head = DenoisingHead(6, cutoff=4.0)
    for p in head.parameters():  # larger than at initialisation, so nothing is near zero
        torch.nn.init.normal_(p)
    x = torch.randn(pos.size(0), 6)
    out = head(x, pos, batch)
    assert out.shape == (pos.size(0), 3) and float(out.detach().abs().max()) > 1e-3
    for reflect in (False, True):
        rot = random_orthogonal(2, reflect=reflect)
        moved = head(x, pos @ rot.T + torch.tensor([1.0, -2.0, 0.5]), batch)
        # A vector (1o) follows any rotation or reflection of the positions.
        assert torch.allclose(moved, out @ rot.T, atol=1e-10)
    perm = torch.randperm(pos.size(0))
    perm = perm[torch.argsort(batch[perm], stable=True)]
    assert torch.allclose(head(x[perm], pos[perm], batch[perm]), out[perm], atol=1e-12)
    # Given the radius graph (a model's own), the same output without building one.
    from acn_pyg.graph import radius_graph
    edge_index = radius_graph(pos, 4.0, batch)
    assert torch.allclose(head(x, pos, batch, edge_index), out, atol=1e-12)
    # Each molecule's output depends on its own atoms only.
    alone = head(x[batch == 1], pos[batch == 1])
    assert torch.allclose(alone, out[batch == 1], atol=1e-12)


def test_head_refuses_a_bad_width():
    with pytest.raises(ValueError, match="in_channels"):
        DenoisingHead(0)


def test_centered_noise_has_no_molecular_mean_and_follows_its_generator(batch_of_molecules):
    _, _, pos, batch = batch_of_molecules
    noise = centered_noise(pos, batch, torch.Generator().manual_seed(0))
    assert noise.shape == pos.shape and noise.dtype == pos.dtype
    assert torch.allclose(scatter(noise, batch, dim=0, reduce="mean"),
                          torch.zeros(3, 3, dtype=pos.dtype), atol=1e-12)
    assert float(noise.std()) > 0.5
    again = centered_noise(pos, batch, torch.Generator().manual_seed(0))
    assert torch.equal(noise, again)
    single = centered_noise(pos[:5])
    assert torch.allclose(single.mean(dim=0), torch.zeros(3, dtype=pos.dtype), atol=1e-12)
    # With the number of graphs given, the same noise without reading batch's values.
    trusted = centered_noise(pos, batch, torch.Generator().manual_seed(0), num_graphs=3)
    assert torch.equal(trusted, noise)
    with pytest.raises(ValueError, match="batch"):
        centered_noise(pos, batch[:-1])
    with pytest.raises(ValueError, match="batch"):
        centered_noise(pos, batch[:-1], num_graphs=3)
    with pytest.raises(ValueError, match="non-negative"):
        centered_noise(pos, batch - 1)
    with pytest.raises(ValueError, match="pos"):
        centered_noise(pos[:, :2], batch)


def test_denoising_loss_is_the_mean_squared_error():
    pred, noise = torch.randn(7, 3), torch.randn(7, 3)
    assert torch.allclose(denoising_loss(pred, noise), ((pred - noise) ** 2).sum() / 21)
    assert float(denoising_loss(noise, noise)) == 0.0
    with pytest.raises(ValueError, match=r"shape \[num_atoms, 3\] \(got \[7, 3\] and \[7, 2\]"):
        denoising_loss(pred, noise[:, :2])
    with pytest.raises(ValueError, match=r"got \[5, 3\] and \[7, 3\]"):
        denoising_loss(pred[:5], noise)


def test_head_learns_the_predictable_part_of_the_noise():
    # Diatomic molecules at their equilibrium bond length 1.1 A, displaced by
    # noise: the part of the (centred) noise along the bond is told by the
    # bond's length; the rest is a rotation no invariant model can see. The
    # zero prediction scores about 0.5 (two atoms: half the variance is the
    # molecular mean, removed); the best one about 2/3 of that.
    g = torch.Generator().manual_seed(0)
    sigma, num = 0.1, 256

    def molecules():
        axis = torch.nn.functional.normalize(torch.randn(num, 3, generator=g), dim=-1)
        pos = torch.stack([torch.zeros(num, 3), 1.1 * axis], dim=1).reshape(-1, 3)
        batch = torch.arange(num).repeat_interleave(2)
        noise = centered_noise(pos, batch, g)
        return pos + sigma * noise, batch, noise

    head = DenoisingHead(2, cutoff=3.0)
    x = torch.ones(2 * num, 2)
    test_pos, test_batch, test_noise = molecules()
    with torch.no_grad():
        zero = float(denoising_loss(torch.zeros_like(test_noise), test_noise))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(150):
        pos, batch, noise = molecules()
        opt.zero_grad()
        denoising_loss(head(x, pos, batch), noise).backward()
        opt.step()
    with torch.no_grad():
        learned = float(denoising_loss(head(x, test_pos, test_batch), test_noise))
    assert 0.45 < zero < 0.55
    assert learned < 0.8 * zero


def run_args(source_dir, tmp_path, name, *extra):
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--target", "U0", *extra)
    args[args.index("--out") + 1] = str(tmp_path / name)
    return args


def test_denoise_weight_trains_records_and_resumes(source_dir, tmp_path):
    torch.set_default_dtype(torch.float32)
    assert example.main(run_args(source_dir, tmp_path, "off")) == 0
    on_args = run_args(source_dir, tmp_path, "on", "--denoise-weight", "2",
                       "--denoise-sigma", "0.1")
    assert example.main(on_args) == 0
    off, on = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("off", "on"))
    assert on["config"]["denoise_weight"] == 2.0 and on["config"]["denoise_sigma"] == 0.1
    assert all(0 < h["train_denoise_loss"] < 5 for h in on["history"])
    assert all("train_denoise_loss" not in h for h in off["history"])
    # The same batches: the energy loss of the first epoch differs only through
    # the head's gradients on the shared layers (the first step is equal).
    assert on["parameters"] == off["parameters"]  # the head is not part of the model
    ckpt_off, ckpt_on = (torch.load(tmp_path / n / "last.pt", weights_only=True)
                         for n in ("off", "on"))
    assert "denoise_head" in ckpt_on and "denoise_head" not in ckpt_off
    best = torch.load(tmp_path / "on" / "best.pt", weights_only=True)["state_dict"]
    assert best.keys() == ckpt_off["model"].keys()  # best.pt loads into a plain model
    assert any(not torch.allclose(ckpt_off["model"][k], ckpt_on["model"][k], atol=1e-7)
               for k in best)
    # Resume continues with the head and the optimizer state of both.
    more = on_args.copy()
    more[more.index("--epochs") + 1] = "3"
    assert example.main(more + ["--resume"]) == 0
    resumed = json.loads((tmp_path / "on" / "metrics.json").read_text())
    assert resumed["epochs"] == 3 and resumed["history"][:2] == on["history"]
    head = torch.load(tmp_path / "on" / "last.pt", weights_only=True)["denoise_head"]
    assert any(not torch.equal(head[k], ckpt_on["denoise_head"][k]) for k in head)
    # A checkpoint cannot switch the option on or off.
    with pytest.raises(ValueError, match=r"trained with --denoise-weight 2.0 \(here 0.0\)"):
        example.main(run_args(source_dir, tmp_path, "on", "--epochs", "4", "--resume"))
    with pytest.raises(ValueError, match=r"trained with --denoise-weight 0.0 \(here 1.0\)"):
        example.main(run_args(source_dir, tmp_path, "off", "--epochs", "4", "--resume",
                              "--denoise-weight", "1"))


def test_training_step_reuses_the_models_graph_for_the_head(source_dir, tmp_path, monkeypatch):
    torch.set_default_dtype(torch.float32)
    import acn_pyg.nn.conv.atom_cloud_conv as conv_module

    def no_second_graph(*args, **kwargs):
        raise AssertionError("the head built its own radius graph")

    # Only AtomCloudConv.forward without an edge_index builds a graph here;
    # the model's own graph comes from its RadiusGraph.
    monkeypatch.setattr(conv_module, "radius_graph", no_second_graph)
    assert example.main(run_args(source_dir, tmp_path, "on", "--denoise-weight", "1")) == 0


@pytest.mark.parametrize("extra, match", [
    (("--denoise-weight", "-1"), "must be >= 0"),
    (("--denoise-sigma", "0"), "standard deviation"),
    (("--model", "schnet"), "not available for --model schnet"),
])
def test_denoise_weight_refuses_what_it_cannot_do(source_dir, tmp_path, extra, match):
    torch.set_default_dtype(torch.float32)
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--denoise-weight", "1", *extra)
    with pytest.raises(ValueError, match=match):
        example.main(args)


def test_denoising_loss_term_reads_the_models_atom_features(batch_of_molecules):
    from torch_geometric.data import Batch, Data

    from acn_pyg import AtomCloudNet
    from acn_pyg.train import DenoisingLoss

    mols, z, pos, batch = batch_of_molecules
    net = AtomCloudNet(hidden_channels=8, num_layers=2, cutoff=3.0)
    term = DenoisingLoss(8, cutoff=3.0, sigma=0.1, weight=2.0)
    data = Batch.from_data_list([Data(z=m[0], pos=m[1]) for m in mols])
    torch.manual_seed(3)
    value = term(net, data)
    # By hand: the same noise, the model's atom features of the displaced
    # positions, the head on them; the weight is the loop's to apply.
    torch.manual_seed(3)
    noise = centered_noise(pos, batch, num_graphs=3)
    noisy = pos + 0.1 * noise
    features, _ = net.atom_features(z, noisy, batch)
    expected = denoising_loss(term.head(features, noisy, batch), noise)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    assert term.weight == 2.0
    # It trains the model's layers as well as the head, and no hook is left behind.
    value.backward()
    assert net.embedding.weight.grad is not None and net.embedding.weight.grad.abs().sum() > 0
    assert not net.atom_mlp._forward_hooks and not net._forward_hooks
