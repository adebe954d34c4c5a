"""Ensembles of finished runs (ensemble.py, run_ensemble.py): greedy
selection on held-out predictions, weight averages, the mean prediction of
runs with their compute counted, and the check that a checkpoint still gives
its run's result."""
import json
import os
import pathlib
import shutil

import pytest
import torch

from acn_pyg.train import run

import ensemble
from ensemble import average_state_dicts, ensemble_test, greedy_selection, lineage
from finished_runs import REPRODUCE_RTOL, reproduces


def test_greedy_selection_adds_members_while_the_mean_improves():
    true = torch.zeros(6, dtype=torch.float64)
    ones = torch.ones(6, dtype=torch.float64)
    # 0 and 1 err by +1 and -1 (their mean is exact); 2 by +1.5 and 3 by +0.9.
    preds = torch.stack([ones, -ones, 1.5 * ones, 0.9 * ones])
    # Best alone: member 3 (0.9); with 1: |0.9 - 1| / 2 = 0.05; then 0:
    # |0.9 - 1 + 1| / 3 = 0.3 and 2: |0.9 - 1 + 1.5| / 3 = 0.47 are worse: stop.
    assert greedy_selection(preds, true) == [3, 1]


def test_greedy_selection_leaves_out_a_member_that_only_adds_noise():
    gen = torch.Generator().manual_seed(0)
    true = torch.randn(500, generator=gen, dtype=torch.float64)
    good = [true + 0.1 * torch.randn(500, generator=gen, dtype=torch.float64) for _ in range(3)]
    noisy = true + 3.0 * torch.randn(500, generator=gen, dtype=torch.float64)
    preds = torch.stack(good[:2] + [noisy] + good[2:])
    chosen = greedy_selection(preds, true)
    assert 2 not in chosen and len(chosen) >= 2 and len(set(chosen)) == len(chosen)
    mae = float((preds[chosen].mean(0) - true).abs().mean())
    singles = (preds - true).abs().mean(1)
    assert mae < float(singles.min())
    # One member: chosen alone.
    assert greedy_selection(preds[2:3], true) == [0]


def test_greedy_selection_checks_shapes():
    with pytest.raises(ValueError, match=r"shape \[K >= 1, N\]"):
        greedy_selection(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="reference values"):
        greedy_selection(torch.zeros(2, 4), torch.zeros(3))


def test_average_state_dicts_is_the_weighted_mean_of_floating_entries():
    gen = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(3, 2, generator=gen), "n": torch.tensor(4)}
    b = {"w": torch.randn(3, 2, generator=gen), "n": torch.tensor(4)}
    mean = average_state_dicts([a, b])
    assert torch.allclose(mean["w"], (a["w"] + b["w"]) / 2) and mean["n"] == 4
    assert mean["w"].dtype == a["w"].dtype
    assert torch.allclose(average_state_dicts([a, b], [0.25, 0.75])["w"],
                          0.25 * a["w"] + 0.75 * b["w"])
    assert torch.equal(average_state_dicts([a])["w"], a["w"])
    with pytest.raises(ValueError, match="summing to 1"):
        average_state_dicts([a, b], [0.5, 0.6])
    with pytest.raises(ValueError, match="not floating point"):
        average_state_dicts([a, {**b, "n": torch.tensor(5)}])
    with pytest.raises(ValueError, match="shape"):
        average_state_dicts([a, {**b, "w": torch.zeros(2, 3)}])
    with pytest.raises(ValueError, match="other entries"):
        average_state_dicts([a, {"w": b["w"]}])


def test_ensemble_averages_finished_runs(two_seeded_runs, tiny_config, tmp_path, monkeypatch,
                                         capsys):
    runs = two_seeded_runs
    result = ensemble_test(runs, device="cpu")
    # Each member reproduces its own run's test MAE from its best checkpoint.
    for run_dir, mae in zip(runs, result["member_test_mae"]):
        own = json.loads((pathlib.Path(run_dir) / "metrics.json").read_text())["test_mae"]
        assert mae == pytest.approx(own, rel=1e-5)
    assert result["member_test_mae"][0] != result["member_test_mae"][1]
    # |mean of predictions - y| <= mean of |prediction - y|, molecule by molecule.
    assert result["test_mae"] <= sum(result["member_test_mae"]) / 2 + 1e-9
    assert result["test_size"] == 8 and result["target"] == "U0"
    assert result["test_mae_kcal_mol"] == pytest.approx(result["test_mae"] * 23.0605, rel=1e-4)

    # Validation predictions too; greedy selection on them, all members' mean kept beside.
    assert result["val_size"] == 8 and len(result["member_val_mae"]) == 2
    assert result["select"] == "all" and result["selected"] == runs
    assert result["test_mae_all"] == result["test_mae"]
    greedy = ensemble_test(runs, device="cpu", select="greedy")
    assert greedy["selected"] == greedy["greedy_order"]
    assert greedy["member_test_mae"] == pytest.approx(result["member_test_mae"])
    best = min(range(2), key=lambda k: greedy["member_val_mae"][k])
    assert greedy["selected"][0] == runs[best]
    assert greedy["val_mae"] <= greedy["member_val_mae"][best]
    assert greedy["test_mae_all"] == pytest.approx(result["test_mae"])
    own = [json.loads((pathlib.Path(r) / "metrics.json").read_text()) for r in runs]
    assert result["total_epochs"] == sum(m["epochs"] for m in own)
    with pytest.raises(ValueError, match="select must be one of"):
        ensemble_test(runs, device="cpu", select="best")

    # A warm start from run0: its compute counts run0's once, however often it appears.
    run(tiny_config(tmp_path / "warm", init_from=str(tmp_path / "run0" / "best.pt")))
    assert lineage(str(tmp_path / "warm")) == [str(tmp_path / "warm"), str(tmp_path / "run0")]
    both = ensemble_test([str(tmp_path / "warm"), runs[0]], device="cpu")
    warm_epochs = json.loads((tmp_path / "warm" / "metrics.json").read_text())["epochs"]
    assert both["compute"][0]["ancestors"][0]["run"] == str(tmp_path / "run0")
    assert both["total_epochs"] == warm_epochs + own[0]["epochs"]
    assert sum(both["total_wall_time_s_by_device"].values()) == pytest.approx(
        both["total_wall_time_s"])
    assert set(both["total_wall_time_s_by_device"]) == {"cpu"}
    assert both["ancestors_not_found"] == []
    # A start whose folder is gone is named as not counted, not dropped.
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "warm", moved)
    metrics = json.loads((moved / "metrics.json").read_text())
    metrics["config"]["init_from"] = str(tmp_path / "gone" / "best.pt")
    (moved / "metrics.json").write_text(json.dumps(metrics))
    assert lineage(str(moved)) == [str(moved)]
    alone = ensemble_test([str(moved)], device="cpu")
    assert alone["ancestors_not_found"] == [str(tmp_path / "gone" / "best.pt")]
    assert alone["total_epochs"] == warm_epochs

    # A start whose folder is gone but whose copy is kept elsewhere (a results
    # folder) is counted from that record, found by the path it was written to.
    records = tmp_path / "records"
    shutil.copytree(tmp_path / "run0", records / "kept0")
    shutil.move(tmp_path / "run0", tmp_path / "run0_away")
    try:
        warm_dir, kept0 = str(tmp_path / "warm"), str(records / "kept0")
        assert lineage(warm_dir) == [warm_dir]
        assert lineage(warm_dir, records=[str(records)]) == [warm_dir, kept0]
        counted = ensemble_test([warm_dir], device="cpu", records=[str(records)])
        assert counted["ancestors_not_found"] == []
        assert counted["compute"][0]["ancestors"][0]["record_of"] == str(tmp_path / "run0")
        assert counted["total_epochs"] == warm_epochs + own[0]["epochs"]
        # The record is also a member: the same weights, counted once.
        with_kept = ensemble_test([warm_dir, kept0], device="cpu", records=[str(records)])
        assert with_kept["total_epochs"] == warm_epochs + own[0]["epochs"]
        import run_ensemble as script
        assert script.main([warm_dir, "--device", "cpu", "--records", str(records), "--no-cache",
                            "--out", str(tmp_path / "ens" / "records")]) == 0
        assert (f"counted from their records (the run folder is gone): {tmp_path / 'run0'} as "
                f"{kept0}.") in (tmp_path / "ens" / "records.md").read_text()
        # Two records written to one path that are not one run: refused, not guessed.
        shutil.copytree(records / "kept0", records / "other")
        other = json.loads((records / "other" / "metrics.json").read_text())
        other["wall_time_s"] += 1.0
        (records / "other" / "metrics.json").write_text(json.dumps(other))
        with pytest.raises(ValueError, match="are not one run"):
            lineage(warm_dir, records=[str(records)])
        shutil.rmtree(records / "other")
        with pytest.raises(ValueError, match="records folder"):
            lineage(warm_dir, records=[str(tmp_path / "nowhere")])
    finally:
        shutil.move(tmp_path / "run0_away", tmp_path / "run0")

    # The script: its table marks the chosen members and writes JSON beside it.
    import run_ensemble as script
    stem = tmp_path / "ens" / "greedy"
    assert script.main([*runs, "--device", "cpu", "--select", "greedy", "--out", str(stem),
                        "--cache", str(tmp_path / "script_cache")]) == 0
    text = (tmp_path / "ens" / "greedy.md").read_text()
    assert f"mean prediction of the {len(greedy['selected'])} chosen" in text
    assert "mean prediction of all 2" in text and "by device: cpu" in text
    saved = json.loads((tmp_path / "ens" / "greedy.json").read_text())
    assert saved["result"]["test_mae"] == pytest.approx(greedy["test_mae"])
    assert "machine" in saved

    # With a prediction cache: the first call fills it, the second runs no model
    # and gives the same numbers; the script's default cache is used likewise.
    cache = str(tmp_path / "cache")
    first = ensemble_test(runs, device="cpu", select="greedy", cache_dir=cache)
    assert first["cached"] == [False, False] and len(os.listdir(cache)) == 2

    def no_model(*args, **kwargs):
        raise AssertionError("a cached member's model was run")

    original = ensemble.load_best_model
    monkeypatch.setattr(ensemble, "load_best_model", no_model)
    again = ensemble_test(runs, device="cpu", select="greedy", cache_dir=cache)
    assert again["cached"] == [True, True]
    for key in ("member_val_mae", "member_test_mae", "val_mae", "test_mae", "selected"):
        assert again[key] == first[key] == greedy[key]
    assert script.main([*runs, "--device", "cpu", "--cache", cache]) == 0
    assert "Predictions of 2 of the 2 runs taken from the cache" in capsys.readouterr().out
    monkeypatch.setattr(ensemble, "load_best_model", original)
    assert script.main([*runs, "--device", "cpu", "--no-cache"]) == 0
    assert "from the cache" not in capsys.readouterr().out

    run(tiny_config(tmp_path / "other", train_size=12))
    with pytest.raises(ValueError, match="train_size"):
        ensemble_test(runs + [str(tmp_path / "other")], device="cpu")
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        ensemble_test([str(tmp_path / "missing")], device="cpu")


def test_ensemble_refuses_a_checkpoint_that_no_longer_gives_its_result(tiny_config, tmp_path):
    run(tiny_config(tmp_path / "run"))
    best = tmp_path / "run" / "best.pt"
    ckpt = torch.load(best, weights_only=True)
    state = ckpt["state_dict"]
    key = next(k for k, v in state.items() if k.startswith("convs.0.linear") and v.numel() > 1)
    state[key] = state[key].flip(0)  # same shape, other order: loads, means something else
    cache = str(tmp_path / "cache")
    ensemble_test([str(tmp_path / "run")], device="cpu", cache_dir=cache)  # cached as it was
    torch.save(ckpt, best)
    with pytest.raises(ValueError, match="does not match this code"):
        ensemble_test([str(tmp_path / "run")], device="cpu")
    # The cache holds the old weights' predictions; the new bytes are not found there.
    with pytest.raises(ValueError, match="does not match this code"):
        ensemble_test([str(tmp_path / "run")], device="cpu", cache_dir=cache)
    assert len(os.listdir(cache)) == 1  # and a checkpoint that fails the check is not stored


def test_one_tolerance_decides_whether_a_checkpoint_reproduces_its_run():
    assert reproduces(0.04, 0.04 * (1 + 0.5 * REPRODUCE_RTOL))
    assert not reproduces(0.04, 0.04 * (1 + 2 * REPRODUCE_RTOL))
    assert not reproduces(0.04 * (1 + 2 * REPRODUCE_RTOL), 0.04)
