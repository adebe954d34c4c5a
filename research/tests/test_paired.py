"""Paired comparisons of training options (paired.py, denoise.py): each seed
with and without an option, at equal epochs, and the statistics over seeds."""
import json
import math
import pathlib

import pytest
import torch

import denoise
import paired


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
    """A tiny paired comparison: U0, 16 training molecules, 2 epochs, init
    seeds 0 and 3; results in ``tmp_path/res``."""
    return ["--target", "U0", "--train-size", "16", "--val-size", "8", "--test-size", "8",
            "--epochs", "2", "--batch-size", "8", "--seeds", "0,3", "--root",
            str(tmp_path / "qm9"), "--data-source", source_dir, "--threads", "0",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "res"), *extra]


def test_paired_p_value_matches_the_closed_form_of_students_t():
    # Changes -1, -2, -3: mean -2, s = 1, t = -2 sqrt(3); with 2 degrees of
    # freedom the two-sided p is 1 - |t| / sqrt(t^2 + 2) = 1 - sqrt(12 / 14).
    assert paired.paired_p_value([-1.0, -2.0, -3.0]) == pytest.approx(1 - (12 / 14) ** 0.5,
                                                                      rel=1e-9)
    # With 1 degree of freedom (two seeds) p = 1 - (2 / pi) atan(|t|).
    t = 1.5 / (math.sqrt(0.5) / math.sqrt(2))  # s = sqrt(0.5): t = 3
    assert paired.paired_p_value([1.0, 2.0]) == pytest.approx(1 - 2 / math.pi * math.atan(t),
                                                              rel=1e-9)
    assert paired.paired_p_value([0.0, 0.0, 0.0]) is None
    assert paired.paired_p_value([-1.0]) is None
    rows = [{"seed": s, "w": w, "test_mae_kcal_mol": 5.0 + d, "change_kcal_mol": d}
            for s, (w, d) in enumerate([(0, 0.0), (1, -1.0), (0, 0.0), (1, -2.0), (0, 0.0),
                                        (1, -3.0)])]
    lines, summary = paired.summary_table(rows, "w", [0, 1])
    assert summary[0]["p_paired_t"] is None and lines[2] == "| 0 | 3 | 5.000 | +0.000 | 0 of 3 |  |"
    assert summary[1]["p_paired_t"] == pytest.approx(0.0742, abs=1e-4)
    assert lines[3] == "| 1 | 3 | 3.000 | -2.000 | 0 of 3 | 0.07 |"
    # Below 0.01 a p-value keeps one significant digit instead of reading 0.00.
    assert (paired.p_cell(0.0742), paired.p_cell(0.0040464), paired.p_cell(None)) == (
        "0.07", "0.004", "")


def test_summary_compares_variants_on_the_seeds_they_all_have():
    # The control and "a" on seeds 0, 1, 2; "b" on seeds 0 and 1 only, and
    # better than "a" on both: over all their seeds "a" has the lower mean
    # test, over the seeds they share "b" does.
    tests = {("none", 0): 3.0, ("none", 1): 3.0, ("none", 2): 2.0, ("a", 0): 2.5,
             ("a", 1): 2.5, ("a", 2): 1.0, ("b", 0): 2.0, ("b", 1): 2.2}
    rows = [{"seed": s, "v": v, "test_mae_kcal_mol": t,
             "change_kcal_mol": t - tests[("none", s)]} for (v, s), t in tests.items()]
    lines, summary = paired.summary_table(rows, "v", ["none", "a", "b"])
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
    lines, summary = paired.summary_table(same, "v", ["none", "a", "b"])
    assert len(lines) == 5 and all("same_seeds" not in r for r in summary)


def test_denoise_comparison_pairs_each_seed_with_its_control(source_dir, tmp_path, monkeypatch):
    torch.set_default_dtype(torch.float32)
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
    assert runs[(3, "none")]["run"].endswith("seed3_w0")  # the control's name
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
    # A folder holding another run is refused, not overwritten.
    with pytest.raises(SystemExit, match="holds another run"):
        denoise.main(with_flags(argv, seeds="3", batch_size="4"))
