"""Denoising as an auxiliary task: the head's symmetries, the noise, the loss,
the training option end to end (with resume) and its benchmark."""
import json
import pathlib
import sys

import pytest
import torch
from torch_geometric.utils import scatter

from acn_pyg.nn import DenoisingHead, centered_noise, denoising_loss

from conftest import random_orthogonal

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import qm9 as example  # noqa: E402

from test_qm9_example import tiny_args  # noqa: E402
from test_stationary import paired_argv, with_flags  # noqa: E402


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
    best = torch.load(tmp_path / "on" / "best.pt", weights_only=True)
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
    with pytest.raises(ValueError, match="saved with --denoise-weight"):
        example.main(run_args(source_dir, tmp_path, "on", "--epochs", "4", "--resume"))
    with pytest.raises(ValueError, match="saved without --denoise-weight"):
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
    (("--compile",), "forward hook"),
])
def test_denoise_weight_refuses_what_it_cannot_do(source_dir, tmp_path, extra, match):
    torch.set_default_dtype(torch.float32)
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--denoise-weight", "1", *extra)
    with pytest.raises(ValueError, match=match):
        example.main(args)


def test_denoise_benchmark_pairs_each_seed_with_its_control(source_dir, tmp_path, monkeypatch):
    torch.set_default_dtype(torch.float32)
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
    import denoise
    import paired
    argv = paired_argv(source_dir, tmp_path, "--weights", "0,1", "--sigmas", "0.02,0.1")
    assert denoise.main(argv) == 0
    result = json.loads((tmp_path / "res.json").read_text())
    runs = {(r["seed"], r["variant"]): r for r in result["runs"]}
    labels = {"none", "weight 1, sigma 0.02 A", "weight 1, sigma 0.1 A"}
    assert set(runs) == {(s, v) for s in (0, 3) for v in labels}
    for (seed, label), r in runs.items():
        cfg = json.loads((pathlib.Path(r["run"]) / "metrics.json").read_text())["config"]
        assert cfg["init_seed"] == seed
        assert cfg["denoise_weight"] == (0.0 if label == "none" else 1.0)
        assert r["change_kcal_mol"] == pytest.approx(
            r["test_mae_kcal_mol"] - runs[(seed, "none")]["test_mae_kcal_mol"])
        assert (r["denoise_loss"] is None) == (label == "none")
    assert runs[(0, "weight 1, sigma 0.1 A")]["run"].endswith("seed0_dn1_s0.1")
    assert runs[(3, "none")]["run"].endswith("seed3_w0")  # stationary.py's control name
    assert "| weight 1, sigma 0.02 A | 2 |" in (tmp_path / "res.md").read_text()
    # Finished runs are read, not trained again.
    monkeypatch.setattr(paired, "run", lambda cfg: pytest.fail("trained again"))
    assert denoise.main(argv) == 0
    assert json.loads((tmp_path / "res.json").read_text())["runs"] == result["runs"]
    # A control recorded with another sigma (the default before 0.2.12) is the
    # same run, since without denoising sigma does nothing; a denoising run
    # recorded with another sigma is not.
    for name, reused in (("seed3_w0", True), ("seed3_dn1_s0.1", False)):
        path = tmp_path / "runs" / name / "metrics.json"
        text = path.read_text()
        metrics = json.loads(text)
        metrics["config"]["denoise_sigma"] = 0.05
        path.write_text(json.dumps(metrics))
        if reused:
            assert denoise.main(argv) == 0
            assert json.loads((tmp_path / "res.json").read_text())["runs"] == result["runs"]
        else:
            with pytest.raises(SystemExit, match="seed3_dn1_s0.1 holds another run"):
                denoise.main(argv)
        path.write_text(text)
    # Seeds whose run folders are gone come from an earlier result of the
    # same comparison (--previous), with the same rows and changes.
    assert denoise.main(with_flags(argv, seeds="0", out=str(tmp_path / "res0"))) == 0
    assert denoise.main(with_flags(argv, seeds="0", sigmas="0.02",
                                   out=str(tmp_path / "res0_002"))) == 0
    runs_dir = tmp_path / "runs"
    for folder in runs_dir.glob("seed0_*"):
        folder.rename(tmp_path / ("gone_" + folder.name))
    previous = str(tmp_path / "res0.json")
    assert denoise.main(with_flags(argv, seeds="3", previous=previous,
                                   out=str(tmp_path / "res03"))) == 0
    merged = json.loads((tmp_path / "res03.json").read_text())
    assert [{k: v for k, v in r.items() if k != "record"} for r in merged["runs"]] == sorted(
        result["runs"], key=lambda r: r["seed"])
    assert {r.get("record") for r in merged["runs"]} == {previous, None}
    assert merged["summary"] == result["summary"]
    assert (f"As recorded in `{previous}`, not read from run folders: seed 0 (`none`, "
            "`weight 1, sigma 0.02 A`, `weight 1, sigma 0.1 A`).") in (
                tmp_path / "res03.md").read_text()
    # A seed's recorded runs come from the record, its others from their
    # folders: the same rows, in the same order.
    (tmp_path / "gone_seed0_dn1_s0.1").rename(runs_dir / "seed0_dn1_s0.1")
    partial = str(tmp_path / "res0_002.json")
    assert denoise.main(with_flags(argv, previous=partial, out=str(tmp_path / "mixed"))) == 0
    mixed = json.loads((tmp_path / "mixed.json").read_text())
    assert [{k: v for k, v in r.items() if k != "record"} for r in mixed["runs"]] == result["runs"]
    assert [(r["seed"], r["variant"]) for r in mixed["runs"] if "record" in r] == [
        (0, "none"), (0, "weight 1, sigma 0.02 A")]
    assert mixed["summary"] == result["summary"]
    assert (f"As recorded in `{partial}`, not read from run folders: seed 0 (`none`, "
            "`weight 1, sigma 0.02 A`).") in (tmp_path / "mixed.md").read_text()
    # A run in two records alike (a shared control) is taken from the first.
    both = previous + "," + partial
    assert denoise.main(with_flags(argv, seeds="3", previous=both,
                                   out=str(tmp_path / "both"))) == 0
    assert json.loads((tmp_path / "both.json").read_text())["runs"] == merged["runs"]
    # A record of other settings, or a run recorded differently in two, is refused.
    with pytest.raises(SystemExit, match="batch_size = 8, here 4"):
        denoise.main(with_flags(argv, seeds="3", previous=previous, batch_size="4"))
    other = json.loads((tmp_path / "res0_002.json").read_text())
    other["runs"][0]["test_mae_kcal_mol"] += 0.5
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="seed 0, variant 'none' is recorded differently in"):
        denoise.main(with_flags(argv, seeds="3", previous=previous + "," + str(
            tmp_path / "other.json")))


def test_learning_curve_tables_name_the_denoising():
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
    from learning_curve_table import variant
    args = {"denoise_weight": 0.5, "denoise_sigma": 0.1}
    assert "denoise 0.5 at 0.1 A" in variant(args, "acn")
    assert "denoise" not in variant({"denoise_weight": 0.0}, "acn")
