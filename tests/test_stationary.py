"""The stationary-point penalty (``--stationary-weight``): QM9's geometries are
optimised, so the true electronic energy has zero gradient there."""
import json
import os
import pathlib
import sys

import pytest
import torch
from torch_geometric.utils import scatter

from acn_pyg import AtomCloudNet
from acn_pyg.training import STATIONARY_TARGETS, stationary_penalty

from conftest import random_orthogonal

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import qm9 as example  # noqa: E402

from test_qm9_example import tiny_args  # noqa: E402


def test_penalty_is_the_mean_squared_gradient_of_each_molecules_energy(batch_of_molecules):
    _, _, pos, batch = batch_of_molecules
    pos = pos.clone().requires_grad_()
    g = torch.Generator().manual_seed(3)
    k = torch.rand(pos.size(0), generator=g) + 0.5
    centre = torch.randn(3, 3, generator=g, dtype=pos.dtype)[batch]
    # E_m = sum over the atoms i of molecule m of k_i |p_i - c_m|^2.
    energy = scatter(k * (pos - centre).pow(2).sum(-1), batch, reduce="sum")
    expected = (2 * k[:, None] * (pos - centre).detach()).pow(2).mean()
    assert torch.allclose(stationary_penalty(energy, pos), expected, rtol=1e-12)
    # At the minimum of every molecule's energy the penalty vanishes.
    at_min = centre.clone().requires_grad_()
    energy = scatter(k * (at_min - centre).pow(2).sum(-1), batch, reduce="sum")
    assert float(stationary_penalty(energy, at_min).detach()) == 0.0


def test_penalty_needs_the_positions_the_energies_came_from():
    pos = torch.randn(4, 3)
    with pytest.raises(ValueError, match="requires_grad"):
        stationary_penalty(pos.sum().view(1), pos)


def test_penalty_of_atom_cloud_net_is_invariant_and_trains_the_model(batch_of_molecules):
    _, z, pos, batch = batch_of_molecules
    model = AtomCloudNet(hidden_channels=8, hidden_irreps="8x0e+4x1o+2x2e", num_layers=2,
                         cutoff=4.0)

    def penalty(p, zz=z, b=batch):
        p = p.clone().requires_grad_()
        return stationary_penalty(model(zz, p, b).view(-1), p)

    value = penalty(pos)
    assert float(value) > 0
    # The squared gradient norm is invariant under rotations, reflections,
    # translations and a permutation of the atoms within the batch.
    rot = random_orthogonal(1, reflect=True)
    assert torch.allclose(penalty(pos @ rot.T + torch.tensor([0.3, -1.0, 2.0])), value,
                          rtol=1e-9)
    perm = torch.randperm(pos.size(0))
    order = torch.argsort(batch[perm], stable=True)  # keep the batch sorted
    perm = perm[order]
    assert torch.allclose(penalty(pos[perm], z[perm], batch[perm]), value, rtol=1e-9)
    # Its gradient (a double backward) reaches the layers' parameters, and
    # descending it makes the energies flatter at these geometries.
    value.backward()
    grads = [p.grad for p in model.convs.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().max()) > 0 for g in grads)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(20):
        opt.zero_grad()
        loss = penalty(pos)
        loss.backward()
        opt.step()
    assert float(penalty(pos)) < 0.5 * float(value)


def test_stationary_weight_trains_and_records_its_penalty(source_dir, tmp_path):
    torch.set_default_dtype(torch.float32)
    runs = {}
    for weight in ("0", "2"):
        args = tiny_args(source_dir, tmp_path, "--no-plot", "--target", "U0",
                         "--stationary-weight", weight)
        args[args.index("--out") + 1] = str(tmp_path / f"w{weight}")
        assert example.main(args) == 0
        runs[weight] = json.loads((tmp_path / f"w{weight}" / "metrics.json").read_text())
    assert runs["2"]["config"]["stationary_weight"] == 2.0
    assert all(h["train_stationary_penalty"] > 0 for h in runs["2"]["history"])
    assert all("train_stationary_penalty" not in h for h in runs["0"]["history"])
    # Same seed, same data order: only the penalty tells the two runs' weights apart.
    off, on = (torch.load(os.path.join(tmp_path, f"w{w}", "last.pt"), weights_only=True)["model"]
               for w in ("0", "2"))
    assert off.keys() == on.keys()
    assert any(not torch.allclose(off[k], on[k], rtol=1e-4, atol=1e-6) for k in off)


@pytest.mark.parametrize("extra, match", [
    (("--target", "mu"), "applies to the energies"),
    (("--target", "U0", "--stationary-weight", "-1"), "must be >= 0"),
    (("--target", "U0", "--compile"), "double backward"),
])
def test_stationary_weight_refuses_what_it_cannot_do(source_dir, tmp_path, extra, match):
    torch.set_default_dtype(torch.float32)
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--stationary-weight", "1", *extra)
    with pytest.raises(ValueError, match=match):
        example.main(args)


def test_the_stationary_targets_are_qm9_energies():
    from acn_pyg.datasets.qm9 import ENERGY_TARGETS
    assert STATIONARY_TARGETS <= ENERGY_TARGETS
    assert {"U0", "U_atom", "G_atom"} <= STATIONARY_TARGETS
    assert not STATIONARY_TARGETS & {"homo", "lumo", "gap", "zpve", "mu"}


def test_stationary_benchmark_pairs_each_seed_with_its_control(source_dir, tmp_path,
                                                               monkeypatch, capsys):
    torch.set_default_dtype(torch.float32)
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
    import stationary
    argv = paired_argv(source_dir, tmp_path, "--weights", "0,1.5", "--grad-molecules", "5")
    assert stationary.main(argv) == 0
    result = json.loads((tmp_path / "res.json").read_text())
    runs = {(r["seed"], r["weight"]): r for r in result["runs"]}
    assert set(runs) == {(0, 0.0), (0, 1.5), (3, 0.0), (3, 1.5)}
    for (seed, weight), r in runs.items():
        metrics = json.loads((pathlib.Path(r["run"]) / "metrics.json").read_text())
        assert metrics["config"]["stationary_weight"] == weight
        assert metrics["config"]["init_seed"] == seed and metrics["epochs"] == 2
        assert r["change_kcal_mol"] == pytest.approx(
            r["test_mae_kcal_mol"] - runs[(seed, 0.0)]["test_mae_kcal_mol"])
        assert r["rms_gradient_kcal_mol_A"] > 0
    assert runs[(0, 0.0)]["change_kcal_mol"] == 0.0
    assert "| 1.5 | 2 |" in (tmp_path / "res.md").read_text()
    # Finished runs of the same config are read, not trained again ...
    import paired
    monkeypatch.setattr(paired, "run", lambda cfg: pytest.fail("trained again"))
    assert stationary.main(argv) == 0
    assert json.loads((tmp_path / "res.json").read_text())["runs"] == result["runs"]
    # Seed 0 taken from a record of it (--previous) gives the same table.
    assert stationary.main(with_flags(argv, seeds="0", out=str(tmp_path / "res0"))) == 0
    assert stationary.main(with_flags(argv, seeds="3", out=str(tmp_path / "res03"),
                                      previous=str(tmp_path / "res0.json"))) == 0
    again = json.loads((tmp_path / "res03.json").read_text())
    assert [{k: v for k, v in r.items() if k != "record"} for r in again["runs"]] == result["runs"]
    assert again["summary"] == result["summary"]
    # A record of seed 0's control alone, its folder gone: the other runs
    # are read from their folders, in the same order.
    assert stationary.main(with_flags(argv, seeds="0", weights="0",
                                      out=str(tmp_path / "res0w0"))) == 0
    (tmp_path / "runs" / "seed0_w0").rename(tmp_path / "gone_seed0_w0")
    assert stationary.main(with_flags(argv, out=str(tmp_path / "mixed"),
                                      previous=str(tmp_path / "res0w0.json"))) == 0
    mixed = json.loads((tmp_path / "mixed.json").read_text())
    assert [{k: v for k, v in r.items() if k != "record"} for r in mixed["runs"]] == result["runs"]
    assert [(r["seed"], r["weight"]) for r in mixed["runs"] if "record" in r] == [(0, 0.0)]
    assert mixed["summary"] == result["summary"]
    (tmp_path / "gone_seed0_w0").rename(tmp_path / "runs" / "seed0_w0")
    # ... and a folder holding another run is refused, not overwritten.
    with pytest.raises(SystemExit, match="holds another run"):
        stationary.main(with_flags(argv, batch_size="4"))


def with_flags(argv, **flags):
    """A copy of :obj:`argv` with each flag (``batch_size="4"`` for
    ``--batch-size 4``) set to its value, replaced where it is given."""
    argv = argv.copy()
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


def paired_argv(source_dir, tmp_path, *extra):
    """A tiny paired comparison (``benchmarks/paired.py``): U0, 16 training
    molecules, 2 epochs, init seeds 0 and 3; results in ``tmp_path/res``."""
    return ["--target", "U0", "--train-size", "16", "--val-size", "8", "--test-size", "8",
            "--epochs", "2", "--batch-size", "8", "--seeds", "0,3", "--root",
            str(tmp_path / "qm9"), "--data-source", source_dir, "--threads", "0",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "res"), *extra]


def test_learning_curve_tables_name_the_penalty():
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
    from learning_curve_table import variant
    assert "stationary 0.3" in variant({"stationary_weight": 0.3}, "acn")
    assert "stationary" not in variant({}, "acn")


def test_paired_p_value_matches_the_closed_form_of_students_t():
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
    from paired import paired_p_value, summary_table
    # Changes -1, -2, -3: mean -2, s = 1, t = -2 sqrt(3); with 2 degrees of
    # freedom the two-sided p is 1 - |t| / sqrt(t^2 + 2) = 1 - sqrt(12 / 14).
    assert paired_p_value([-1.0, -2.0, -3.0]) == pytest.approx(1 - (12 / 14) ** 0.5, rel=1e-9)
    # With 1 degree of freedom (two seeds) p = 1 - (2 / pi) atan(|t|).
    import math
    t = 1.5 / (math.sqrt(0.5) / math.sqrt(2))  # s = sqrt(0.5): t = 3
    assert paired_p_value([1.0, 2.0]) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-9)
    assert paired_p_value([0.0, 0.0, 0.0]) is None and paired_p_value([-1.0]) is None
    rows = [{"seed": s, "w": w, "test_mae_kcal_mol": 5.0 + d, "change_kcal_mol": d}
            for s, (w, d) in enumerate([(0, 0.0), (1, -1.0), (0, 0.0), (1, -2.0), (0, 0.0),
                                        (1, -3.0)])]
    lines, summary = summary_table(rows, "w", [0, 1])
    assert summary[0]["p_paired_t"] is None and lines[2] == "| 0 | 3 | 5.000 | +0.000 | 0 of 3 |  |"
    assert summary[1]["p_paired_t"] == pytest.approx(0.0742, abs=1e-4)
    assert lines[3] == "| 1 | 3 | 3.000 | -2.000 | 0 of 3 | 0.07 |"
    # Below 0.01 a p-value keeps one significant digit instead of reading 0.00.
    from paired import p_cell
    assert (p_cell(0.0742), p_cell(0.0040464), p_cell(None)) == ("0.07", "0.004", "")


def test_summary_compares_variants_on_the_seeds_they_all_have():
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
    from paired import summary_table
    # The control and "a" on seeds 0, 1, 2; "b" on seeds 0 and 1 only, and
    # better than "a" on both: over all their seeds "a" has the lower mean
    # test, over the seeds they share "b" does.
    tests = {("none", 0): 3.0, ("none", 1): 3.0, ("none", 2): 2.0, ("a", 0): 2.5,
             ("a", 1): 2.5, ("a", 2): 1.0, ("b", 0): 2.0, ("b", 1): 2.2}
    rows = [{"seed": s, "v": v, "test_mae_kcal_mol": t,
             "change_kcal_mol": t - tests[("none", s)]} for (v, s), t in tests.items()]
    lines, summary = summary_table(rows, "v", ["none", "a", "b"])
    # p: t = -4 on 2 degrees of freedom, t = -9 on 1 (closed forms above).
    assert lines[3:5] == ["| a | 3 | 2.000 | -0.667 | 0 of 3 | 0.06 |",
                          "| b | 2 | 2.100 | -0.900 | 0 of 2 | 0.07 |"]
    assert lines[5:] == [
        "", "The variants were not all run on the same seeds. Over the seeds they all have (0, 1):",
        "", "| v | mean test | mean change |", "| --- | --- | --- |",
        "| none | 3.000 | +0.000 |", "| a | 2.500 | -0.500 |", "| b | 2.100 | -0.900 |"]
    assert [(r["same_seeds"], r["mean_test_mae_same_seeds_kcal_mol"]) for r in summary] == [
        ([0, 1], 3.0), ([0, 1], 2.5), ([0, 1], pytest.approx(2.1))]
    # The same seeds everywhere: no second table.
    same = [r for r in rows if r["seed"] < 2]
    lines, summary = summary_table(same, "v", ["none", "a", "b"])
    assert len(lines) == 5 and all("same_seeds" not in r for r in summary)
