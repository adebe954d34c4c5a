"""The scripts that read finished runs: error analysis, weight averages, kept
checkpoints, a run's model flags, and the merged learning-curve table."""
import argparse
import json
import pathlib
import shutil

import pytest
import torch

from acn_pyg.train import (ACN_FIELDS, MODEL_FIELDS, Config, add_config_arguments,
                           config_from_args, load_run, run)

import error_analysis
import keep_checkpoint
import learning_curve_table
import run_flags
import weight_average
from finished_runs import model_flags

RESULTS = pathlib.Path(__file__).resolve().parent.parent / "results"


def test_error_statistics_on_a_worked_example():
    err = torch.tensor([-1.0, 2.0, 0.0, 3.0] + [1.0] * 96)  # 100 molecules, summed error 102
    s = error_analysis.error_statistics(err)
    assert s["n"] == 100 and s["mae"] == pytest.approx(1.02) and s["max"] == 3.0
    assert s["rmse"] == pytest.approx(((1 + 4 + 9 + 96) / 100) ** 0.5)
    assert s["share_worst_1pct"] == pytest.approx(3 / 102)  # one molecule: the 3.0
    assert s["share_worst_5pct"] == pytest.approx((3 + 2 + 1 + 1 + 1) / 102)
    assert s["mae_without_worst_1pct"] == pytest.approx(99 / 99)
    assert s["q0.5"] == 1.0 and s["q0.999"] <= 3.0
    groups = error_analysis.group_mae(torch.tensor([1.0, -3.0, 2.0]), ["a", "b", "a"])
    assert groups == {"a": {"n": 2, "mae": 1.5}, "b": {"n": 1, "mae": 3.0}}


def test_error_analysis_script_end_to_end(two_seeded_runs, tmp_path):
    runs = two_seeded_runs
    stem = tmp_path / "ea" / "out"
    assert error_analysis.main([*runs, "--device", "cpu", "--cache", str(tmp_path / "cache"),
                                "--worst", "3", "--out", str(stem)]) == 0
    saved = json.loads(stem.with_suffix(".json").read_text())
    assert list(saved["analysis"]) == runs + ["mean of the 2"]
    for run_dir in runs:  # the analysis is of the run's own test error
        own = json.loads((pathlib.Path(run_dir) / "metrics.json").read_text())
        assert saved["analysis"][run_dir]["statistics"]["mae"] == pytest.approx(
            own["test_mae_kcal_mol"], rel=1e-4)
        by_size = saved["analysis"][run_dir]["by_heavy_atoms"]
        assert sum(g["n"] for g in by_size.values()) == 8 == saved["test_size"]
        assert sum(g["n"] * g["mae"] for g in by_size.values()) / 8 == pytest.approx(
            saved["analysis"][run_dir]["statistics"]["mae"])
        worst = saved["analysis"][run_dir]["worst"]
        assert len(worst) == 3 and abs(worst[0]["error"]) >= abs(worst[-1]["error"])
        assert abs(worst[0]["error"]) == pytest.approx(
            saved["analysis"][run_dir]["statistics"]["max"])
        # The full data set has SMILES: each molecule is charge-separated or neutral.
        by_charge = saved["analysis"][run_dir]["by_charge_separation"]
        assert sum(g["n"] for g in by_charge.values()) == 8
        assert all(isinstance(w["smiles"], str) for w in worst)
    assert isinstance(saved["charge_separated_in_training"], int)
    text = stem.with_suffix(".md").read_text()
    assert "by heavy atoms" in text and "Worst 3 molecules of mean of the 2" in text
    assert "Charge-separated molecules" in text
    assert error_analysis.charge_separated("NC=[NH+]CCCC([O-])=O")
    assert error_analysis.charge_separated("O=C1[CH-][NH+]2CCC2=C1")
    assert not error_analysis.charge_separated("C[C@H](N)C(=O)O")
    assert not error_analysis.charge_separated("C-C=[N]")


def test_weight_average_script_on_a_lineage(tiny_config, tmp_path):
    run(tiny_config(tmp_path / "run"))
    run(tiny_config(tmp_path / "warm", lr=3e-4, init_from=str(tmp_path / "run" / "best.pt")))
    runs = [str(tmp_path / "run"), str(tmp_path / "warm")]
    stem = tmp_path / "wa" / "out"
    assert weight_average.main([*runs, "--device", "cpu", "--out", str(stem)]) == 0
    saved = json.loads(stem.with_suffix(".json").read_text())
    own = {r: json.loads((pathlib.Path(r) / "metrics.json").read_text()) for r in runs}
    for r in runs:  # each checkpoint alone gives its run's best validation error
        assert saved["member_val_mae"][r] == pytest.approx(own[r]["best_val_mae"], rel=1e-4)
    best = min(runs, key=saved["member_val_mae"].get)
    assert saved["chosen"][0] == best and saved["chosen_val_mae"] <= saved["member_val_mae"][best]
    (tried,) = saved["tried"]
    assert tried["kept"] == (len(saved["chosen"]) == 2)
    if len(saved["chosen"]) == 1:  # one checkpoint: its own run's test error
        assert saved["chosen_test_mae"] == pytest.approx(own[best]["test_mae"], rel=1e-4)
    assert "chosen on validation" in stem.with_suffix(".md").read_text()
    # Runs of different models cannot be averaged.
    run(tiny_config(tmp_path / "other", hidden_channels=16))
    with pytest.raises(SystemExit, match="hidden_channels"):
        weight_average.main([runs[0], str(tmp_path / "other"), "--device", "cpu"])


def test_keep_checkpoint_copies_a_run_that_reproduces_and_refuses_one_that_does_not(
        tiny_config, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run(tiny_config(run_dir))
    kept = tmp_path / "kept" / "tiny"
    assert keep_checkpoint.main([str(run_dir), str(kept)]) == 0
    metrics = load_run(str(run_dir))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("| `tiny` | 16 | 2 | ") and line.endswith(" | kcal/mol |")
    cells = [float(c) for c in line.split("|")[4:7]]
    assert cells == pytest.approx([metrics[k] * 23.0605 for k in
                                   ("train_mae", "best_val_mae", "test_mae")], abs=1.1e-3)
    for name in ("metrics.json", "best.pt"):
        assert (kept / name).read_bytes() == (run_dir / name).read_bytes()
    with pytest.raises(SystemExit, match="exists"):
        keep_checkpoint.main([str(run_dir), str(kept)])
    # Other weights of the same shapes: the test MAE is not the run's, so nothing is kept.
    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    ckpt["state_dict"] = {k: v.flip(0) if v.numel() > 1 else v
                          for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, run_dir / "best.pt")
    with pytest.raises(SystemExit, match="not kept"):
        keep_checkpoint.main([str(run_dir), str(tmp_path / "kept" / "other")])
    assert not (tmp_path / "kept" / "other").exists()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    return p


def test_model_flags_build_the_same_model_and_nothing_else():
    for cfg in (Config(), Config(hidden_channels=128, hidden_irreps="128x0e + 32x1o + 32x2e",
                                 num_layers=5, cutoff=4.5, lmax=3, product_channels=16,
                                 radial_gain=10.0, many_body=True, weight_norm=True,
                                 product_correlation=3, element_dependent=True,
                                 scalar_activation=False, batch_size=7, lr=1e-4)):
        flags = model_flags(cfg)
        assert all(" " not in flag for flag in flags)  # one word each in a shell
        again = config_from_args(parser().parse_args(flags))
        for field in MODEL_FIELDS:
            if field == "hidden_irreps" and cfg.hidden_irreps is not None:
                assert again.hidden_irreps == cfg.hidden_irreps.replace(" ", "")
            else:
                assert getattr(again, field) == getattr(cfg, field), field
        assert (again.batch_size, again.lr) == (Config().batch_size, Config().lr)
    assert set(MODEL_FIELDS) <= set(ACN_FIELDS)
    with pytest.raises(ValueError, match="'schnet', not 'acn'"):
        model_flags(Config(model="schnet"))


def test_run_flags_prints_a_runs_model_and_denoising_flags(tiny_config, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run(tiny_config(run_dir, num_layers=2, denoise_weight=0.5, denoise_sigma=0.07))
    assert run_flags.main([str(run_dir)]) == 0
    plain = capsys.readouterr().out.split()
    assert plain == model_flags(tiny_config(run_dir, num_layers=2))
    assert run_flags.main([str(run_dir / "metrics.json"), "--denoising"]) == 0
    assert capsys.readouterr().out.split() == plain + ["--denoise-weight", "0.5",
                                                       "--denoise-sigma", "0.07"]
    # A run cut short has no metrics.json: said, for the caller to skip it.
    (tmp_path / "cut").mkdir()
    assert run_flags.main([str(tmp_path / "cut")]) == 1
    assert "has not finished" in capsys.readouterr().err


def test_learning_curve_table_names_each_file_below_the_shared_folder(tmp_path):
    source = RESULTS / "gpu_h100_n10000_capacity" / "acn_eq_n10000_b128" / "lc.json"
    for name in ("a", "b"):  # gpu_learning_curve.sh's layout: OUT/RUN/lc.json
        (tmp_path / name).mkdir()
        shutil.copy(source, tmp_path / name / "lc.json")
    shutil.copy(source, tmp_path / "lc_c.json")
    learning_curve_table.main([str(tmp_path / "a" / "lc.json"), str(tmp_path / "b" / "lc.json"),
                               "--out", str(tmp_path / "t")])
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert sorted(r["file"] for r in rows) == ["a/lc.json", "b/lc.json"]
    learning_curve_table.main([str(tmp_path / "lc_c.json"), "--out", str(tmp_path / "u")])
    assert [r["file"] for r in json.loads((tmp_path / "u.json").read_text())["rows"]] == \
        ["lc_c.json"]


def test_learning_curve_table_names_every_option_that_differs():
    variant = learning_curve_table.variant
    wide = {"hidden_channels": 128, "hidden_irreps": "128x0e+32x1o+32x2e", "num_layers": 3,
            "lmax": 2}
    assert variant(wide, "acn") == "acn 128x0e+32x1o+32x2e"
    assert variant({**wide, "num_layers": 4}, "acn") == "acn 128x0e+32x1o+32x2e, 4 layers"
    assert variant({**wide, "lmax": 3}, "acn") == "acn 128x0e+32x1o+32x2e, lmax 3"
    assert variant({"hidden_channels": 128}, "acn") == "acn 128x0e"
    assert variant({}, "acn") == "acn 64x0e"  # results written before these flags existed
    assert variant({"num_layers": 4}, "schnet") == "schnet"
    assert "denoise 0.5 at 0.1 A" in variant({"denoise_weight": 0.5, "denoise_sigma": 0.1}, "acn")
    assert "denoise" not in variant({"denoise_weight": 0.0}, "acn")
    assert "stationary 0.3" in variant({"stationary_weight": 0.3}, "acn")
    assert "stationary" not in variant({}, "acn")
