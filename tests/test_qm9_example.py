import json
import os
import pathlib
import shutil
import sys

import pytest
import torch

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import qm9 as example  # noqa: E402

from acn_pyg.training import LinearBaseline, lr_factor, predict, split_indices  # noqa: E402


@pytest.fixture(autouse=True)
def _float32():
    torch.set_default_dtype(torch.float32)


def tiny_args(source_dir, tmp_path, *extra):
    """A tiny run. Its time budget (an hour) never binds, so the learning-rate
    schedule follows the steps, not the clock, and two runs that should train
    the same model do so however loaded the machine is (a slow first
    compiled step once moved a 3-minute budget's schedule)."""
    return ["--train-size", "16", "--val-size", "8", "--test-size", "8", "--epochs", "2",
            "--batch-size", "8", "--hidden-channels", "8", "--num-layers", "1",
            "--time-budget", "60", "--root", str(tmp_path / "qm9"), "--data-source", source_dir,
            "--out", str(tmp_path / "run"), *extra]


def two_seeded_runs(source_dir, tmp_path):
    """Two finished tiny runs on one split, init seeds 0 and 7: their folders."""
    runs = []
    for seed in ("0", "7"):
        args = tiny_args(source_dir, tmp_path, "--no-plot", "--init-seed", seed)
        args[args.index("--out") + 1] = str(tmp_path / f"run{seed}")
        example.main(args)
        runs.append(str(tmp_path / f"run{seed}"))
    return runs


def test_end_to_end_writes_metrics_plot_and_checkpoints(source_dir, tmp_path, capsys):
    assert example.main(tiny_args(source_dir, tmp_path, "--target", "gap")) == 0
    out = capsys.readouterr().out
    assert "test MAE (acn, gap)" in out and "kcal/mol" in out and "linear baseline" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["unit"] == "eV" and metrics["sizes"]["train"] == 16
    assert metrics["test_mae"] > 0 and "test_mae_meV" in metrics
    assert "on its training molecules" in out
    # The training-set error is that of the best checkpoint on the training split.
    from acn_pyg.training import load_best_model, predict, prepare, run_config
    from torch_geometric.loader import DataLoader
    cfg = run_config(metrics)
    prep = prepare(cfg)
    model = load_best_model(str(tmp_path / "run"), cfg, prep, "cpu")
    pred, true = predict(model, DataLoader(prep.dataset[prep.split["train"]], batch_size=5),
                         prep.t_index, "cpu")
    assert metrics["train_mae"] == pytest.approx(float((pred - true).abs().mean()), rel=1e-5)
    assert metrics["train_mae"] != pytest.approx(metrics["test_mae"], rel=1e-3)
    for name in ("parity.png", "best.pt", "last.pt"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    # The CPU model is recorded: machines of one kind differ, and so do their speeds.
    assert isinstance(metrics["machine"]["cpu"], str) and metrics["machine"]["cpu"]


def test_cpu_model_reads_proc_cpuinfo_or_falls_back(monkeypatch):
    import builtins
    import platform

    from acn_pyg.training import cpu_model
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/cpuinfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(platform, "processor", lambda: "SomeCPU")
    assert cpu_model() == "SomeCPU"


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_resume_continues_from_checkpoint(source_dir, tmp_path, device):
    example.main(tiny_args(source_dir, tmp_path, "--no-plot", "--device", device))
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--resume", "--device", device)
    args[args.index("--epochs") + 1] = "4"
    example.main(args)
    resumed = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert resumed["epochs"] == 4
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["history"][:2] == first["history"]


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(source_dir, tmp_path,
                                                                 monkeypatch):
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--epochs", "4")
    example.main(args)
    whole = json.loads((tmp_path / "run" / "metrics.json").read_text())

    # The same run, killed after its second epoch's checkpoint, then resumed.
    import acn_pyg.training as training
    real_save, saved = torch.save, []

    def save_then_die(obj, path, *a, **k):
        real_save(obj, path, *a, **k)
        saved.append(str(path))
        if str(path).endswith("last.pt") and sum(p.endswith("last.pt") for p in saved) == 2:
            raise KeyboardInterrupt

    out = ["--out", str(tmp_path / "cut")]
    monkeypatch.setattr(training.torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        example.main(args + out)
    monkeypatch.setattr(training.torch, "save", real_save)
    example.main(args + out + ["--resume"])
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    for key in ("epoch", "train_loss", "val_mae"):  # same batches, steps and weights
        assert [h[key] for h in resumed["history"]] == [h[key] for h in whole["history"]]
    assert resumed["test_mae"] == whole["test_mae"]


def test_subset_file_gives_the_same_run(source_dir, tmp_path):
    from acn_pyg.datasets import QM9, QM9Subset, save_qm9_subset

    example.main(tiny_args(source_dir, tmp_path, "--no-plot"))
    full = json.loads((tmp_path / "run" / "metrics.json").read_text())
    dataset = QM9(str(tmp_path / "qm9"), source_dir=source_dir)
    split = split_indices(len(dataset), 16, 8, 8, seed=0)
    subset = tmp_path / "subset.pt"
    save_qm9_subset(dataset, torch.cat(list(split.values())), str(subset))
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--subset", str(subset))
    args[args.index("--out") + 1] = str(tmp_path / "run_subset")
    example.main(args)
    sub = json.loads((tmp_path / "run_subset" / "metrics.json").read_text())
    assert sub["test_mae"] == pytest.approx(full["test_mae"], rel=1e-6)
    assert [h["val_mae"] for h in sub["history"]] == pytest.approx(
        [h["val_mae"] for h in full["history"]], rel=1e-6)
    # A split that is not in the file is an error, not a smaller data set.
    args[args.index("--train-size") + 1] = "20"
    with pytest.raises(KeyError, match="not in this QM9 subset"):
        example.main(args)
    assert len(QM9Subset(str(subset))) == 32


def test_compiled_training_step_matches_eager(source_dir, tmp_path):
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--epochs", "1", "--ema", "0")
    example.main(args)
    eager = json.loads((tmp_path / "run" / "metrics.json").read_text())
    example.main(args + ["--compile"])
    compiled = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert compiled["config"]["compile"] and not eager["config"]["compile"]
    # Same data, same initialisation: the compiled step trains the same model.
    assert compiled["test_mae"] == pytest.approx(eager["test_mae"], rel=1e-3)


def test_worker_processes_give_the_same_run(source_dir, tmp_path):
    args = tiny_args(source_dir, tmp_path, "--no-plot")
    example.main(args)
    alone = json.loads((tmp_path / "run" / "metrics.json").read_text())
    example.main(args + ["--workers", "2"])
    workers = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert workers["config"]["workers"] == 2 and alone["config"]["workers"] == 0
    # The same batches in the same order: the same training, value for value.
    assert [h["val_mae"] for h in workers["history"]] == [h["val_mae"] for h in alone["history"]]
    assert [h["train_loss"] for h in workers["history"]] == [
        h["train_loss"] for h in alone["history"]]
    assert workers["test_mae"] == alone["test_mae"]
    with pytest.raises(ValueError, match="workers"):
        example.main(args + ["--workers", "-1"])


def test_schnet_baseline_runs_through_the_same_loop(source_dir, tmp_path):
    example.main(tiny_args(source_dir, tmp_path, "--model", "schnet", "--epochs", "1",
                           "--no-plot"))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["model"] == "schnet"


def test_learning_rate_schedule_with_and_without_warmup():
    # Without warm-up: cosine from the peak to 1% of it.
    assert lr_factor(0.0) == pytest.approx(1.0)
    assert lr_factor(0.5) == pytest.approx(0.505)
    assert lr_factor(1.0) == pytest.approx(0.01)
    # With warm-up over the first 10%: linear from 1% to the cosine, then the cosine.
    assert lr_factor(0.0, 0.1) == pytest.approx(0.01)
    assert lr_factor(0.05, 0.1) == pytest.approx(0.5 * lr_factor(0.05))
    assert lr_factor(0.1, 0.1) == lr_factor(0.1)
    assert lr_factor(0.7, 0.1) == lr_factor(0.7)
    steps = [lr_factor(p / 100, 0.1) for p in range(101)]
    peak = steps.index(max(steps))
    assert all(a < b for a, b in zip(steps[:peak], steps[1:peak + 1]))  # rises, then
    assert all(a > b for a, b in zip(steps[peak:-1], steps[peak + 1:]))  # decays


def test_warmup_is_a_flag_and_bad_values_are_refused(source_dir, tmp_path):
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--warmup", "0.2")
    assert example.main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["warmup"] == 0.2
    with pytest.raises(ValueError, match="warmup"):
        example.main(tiny_args(source_dir, tmp_path, "--no-plot", "--warmup", "1.5"))


def test_predict_records_no_graph_and_restores_training_mode():
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader

    from acn_pyg import AtomCloudNet

    torch.manual_seed(0)
    molecules = [Data(z=torch.tensor([6, 1, 1, 1, 1]), pos=torch.randn(5, 3),
                      y=torch.randn(1, 19)) for _ in range(3)]
    model = AtomCloudNet(hidden_channels=8, num_layers=1)
    pred, true = predict(model, DataLoader(molecules, batch_size=2), 7, "cpu")
    assert pred.shape == true.shape == (3,)
    assert not pred.requires_grad and pred.grad_fn is None
    assert model.training


def test_splits_are_disjoint_and_nested():
    a = split_indices(100, 20, 10, 30, seed=1)
    b = split_indices(100, 50, 10, 30, seed=1)
    assert torch.equal(a["test"], b["test"])
    assert set(a["train"].tolist()) <= set(b["train"].tolist())
    assert not set(b["train"].tolist()) & set(b["test"].tolist())
    with pytest.raises(ValueError, match="exceeds"):
        split_indices(10, 5, 5, 5, seed=0)


def test_linear_baseline_recovers_element_energies():
    counts = torch.randint(0, 6, (50, 5)).double()
    true = torch.tensor([-0.5, -37.8, -54.6, -75.0, -99.7], dtype=torch.float64)
    fit = LinearBaseline(extensive=True).fit(counts, counts @ true)
    torch.testing.assert_close(fit.coef, true)
    assert fit.atomref()[6] == pytest.approx(-37.8)


def test_validation_is_spaced_when_the_validation_set_is_larger(source_dir, tmp_path):
    args = tiny_args(source_dir, tmp_path, "--no-plot")
    args[args.index("--train-size") + 1] = "8"
    args[args.index("--val-size") + 1] = "16"
    args[args.index("--epochs") + 1] = "3"
    example.main(args)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [2, 3]


@pytest.mark.parametrize("flag, expected", [((), [True]), (("--no-reuse-memory",), [])])
def test_cpu_runs_keep_freed_memory_unless_told_not_to(source_dir, tmp_path, monkeypatch,
                                                       flag, expected):
    import acn_pyg.training as training

    calls = []
    monkeypatch.setattr(training, "reuse_freed_memory", lambda enable=True: calls.append(enable))
    example.main(tiny_args(source_dir, tmp_path, "--no-plot", "--device", "cpu", *flag))
    assert calls == expected


def test_init_seed_changes_the_initialisation_not_the_split(source_dir, tmp_path):
    example.main(tiny_args(source_dir, tmp_path, "--no-plot"))
    base = json.loads((tmp_path / "run" / "metrics.json").read_text())
    example.main(tiny_args(source_dir, tmp_path, "--no-plot", "--init-seed", "7"))
    other = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert base["baseline_test_mae"] == other["baseline_test_mae"]  # same split
    assert base["history"] != other["history"]  # another initialisation


def test_product_channels_reach_the_model_and_resume(source_dir, tmp_path):
    example.main(tiny_args(source_dir, tmp_path, "--no-plot"))
    base = json.loads((tmp_path / "run" / "metrics.json").read_text())
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--product-channels", "2")
    example.main(args)
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert first["config"]["product_channels"] == 2
    assert first["parameters"] > base["parameters"]
    args[args.index("--epochs") + 1] = "3"
    example.main(args + ["--resume"])
    resumed = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert resumed["epochs"] == 3 and resumed["history"][:2] == first["history"]


def test_init_from_starts_from_an_earlier_runs_weights(source_dir, tmp_path, capsys):
    from acn_pyg.training import load_weights
    example.main(tiny_args(source_dir, tmp_path, "--no-plot"))
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # With a learning rate of ~0 the warm start keeps the loaded weights: its
    # validation and test errors are those of the first run's best.pt.
    warm = ["--no-plot", "--init-from", str(tmp_path / "run" / "best.pt"), "--lr", "1e-30",
            "--out", str(tmp_path / "warm"), "--epochs", "1"]
    example.main(tiny_args(source_dir, tmp_path, *warm))
    assert "initialised from" in capsys.readouterr().out
    again = json.loads((tmp_path / "warm" / "metrics.json").read_text())
    assert again["config"]["init_from"].endswith("best.pt")
    assert again["history"][0]["val_mae"] == pytest.approx(first["best_val_mae"], rel=1e-5)
    assert again["test_mae"] == pytest.approx(first["test_mae"], rel=1e-5)
    # A fresh start with the same flags does not (another initialisation).
    fresh = ["--no-plot", "--lr", "1e-30", "--out", str(tmp_path / "fresh"), "--epochs", "1",
             "--init-seed", "3"]
    example.main(tiny_args(source_dir, tmp_path, *fresh))
    other = json.loads((tmp_path / "fresh" / "metrics.json").read_text())
    assert other["test_mae"] != pytest.approx(first["test_mae"], rel=1e-3)
    # Of a last.pt the weight average is taken.
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    weights = load_weights(str(tmp_path / "run" / "last.pt"))
    assert weights.keys() == {k[len("module."):] for k in last["ema"] if k != "n_averaged"}
    for k, v in weights.items():
        assert torch.equal(v, last["ema"]["module." + k])
    # A resumed warm start continues its own last.pt, not the weights again.
    args = tiny_args(source_dir, tmp_path, *warm, "--resume")
    args[args.index("--epochs", args.index("--out")) + 1] = "2"
    example.main(args)
    assert "initialised from" not in capsys.readouterr().out
    resumed = json.loads((tmp_path / "warm" / "metrics.json").read_text())
    assert resumed["epochs"] == 2 and resumed["history"][:1] == again["history"]


def test_grow_starts_a_deeper_model_from_a_shallower_run(source_dir, tmp_path, capsys):
    example.main(tiny_args(source_dir, tmp_path, "--no-plot", "--num-layers", "2"))
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    best = str(tmp_path / "run" / "best.pt")
    deeper = ["--no-plot", "--num-layers", "4", "--init-from", best, "--lr", "1e-30",
              "--out", str(tmp_path / "deep"), "--epochs", "1"]
    with pytest.raises(ValueError, match="another model"):  # not without --grow
        example.main(tiny_args(source_dir, tmp_path, *deeper))
    example.main(tiny_args(source_dir, tmp_path, *deeper, "--grow"))
    assert "grown from 2 to 4 layers" in capsys.readouterr().out
    deep = json.loads((tmp_path / "deep" / "metrics.json").read_text())
    assert deep["config"]["grow"] and deep["parameters"] > first["parameters"]
    assert deep["history"][0]["val_mae"] == pytest.approx(first["best_val_mae"], rel=1e-5)
    assert deep["test_mae"] == pytest.approx(first["test_mae"], rel=1e-5)
    with pytest.raises(ValueError, match="deepens an AtomCloudNet, not 'schnet'"):
        example.main(tiny_args(source_dir, tmp_path, *deeper, "--grow", "--model", "schnet"))


def test_init_from_refuses_another_models_weights_and_missing_files(source_dir, tmp_path):
    example.main(tiny_args(source_dir, tmp_path, "--no-plot"))
    best = str(tmp_path / "run" / "best.pt")
    with pytest.raises(ValueError, match="init-from.*another model"):
        example.main(tiny_args(source_dir, tmp_path, "--no-plot", "--init-from", best,
                               "--hidden-channels", "16", "--out", str(tmp_path / "other")))
    with pytest.raises(FileNotFoundError, match="init-from"):
        example.main(tiny_args(source_dir, tmp_path, "--no-plot", "--init-from",
                               str(tmp_path / "nothing.pt"), "--out", str(tmp_path / "other")))
    torch.save({"a": 1}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="neither a best.pt"):
        example.main(tiny_args(source_dir, tmp_path, "--no-plot", "--init-from",
                               str(tmp_path / "junk.pt"), "--out", str(tmp_path / "other")))


def test_ensemble_averages_finished_runs(source_dir, tmp_path, monkeypatch, capsys):
    from acn_pyg.ensemble import ensemble_test, lineage

    runs = two_seeded_runs(source_dir, tmp_path)
    result = ensemble_test(runs, device="cpu")
    # Each member reproduces its own run's test MAE from its best checkpoint.
    for run, mae in zip(runs, result["member_test_mae"]):
        own = json.loads((pathlib.Path(run) / "metrics.json").read_text())["test_mae"]
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
    warm = tiny_args(source_dir, tmp_path, "--no-plot", "--init-from",
                     str(tmp_path / "run0" / "best.pt"))
    warm[warm.index("--out") + 1] = str(tmp_path / "warm")
    example.main(warm)
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

    # A start whose folder is gone but whose copy is kept elsewhere (benchmarks/checkpoints,
    # a results folder) is counted from that record, found by the path it was written to.
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
        monkeypatch.syspath_prepend(
            str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
        import ensemble as script
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
    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
    import ensemble as script
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
    import acn_pyg.ensemble

    def no_model(*args, **kwargs):
        raise AssertionError("a cached member's model was run")

    original = acn_pyg.ensemble.load_best_model
    monkeypatch.setattr(acn_pyg.ensemble, "load_best_model", no_model)
    again = ensemble_test(runs, device="cpu", select="greedy", cache_dir=cache)
    assert again["cached"] == [True, True]
    for key in ("member_val_mae", "member_test_mae", "val_mae", "test_mae", "selected"):
        assert again[key] == first[key] == greedy[key]
    assert script.main([*runs, "--device", "cpu", "--cache", cache]) == 0
    assert "Predictions of 2 of the 2 runs taken from the cache" in capsys.readouterr().out
    monkeypatch.setattr(acn_pyg.ensemble, "load_best_model", original)
    assert script.main([*runs, "--device", "cpu", "--no-cache"]) == 0
    assert "from the cache" not in capsys.readouterr().out

    other = tiny_args(source_dir, tmp_path, "--no-plot", "--train-size", "12")
    other[other.index("--out") + 1] = str(tmp_path / "other")
    example.main(other)
    with pytest.raises(ValueError, match="train_size"):
        ensemble_test(runs + [str(tmp_path / "other")], device="cpu")
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        ensemble_test([str(tmp_path / "missing")], device="cpu")


def test_ensemble_refuses_a_checkpoint_that_no_longer_gives_its_result(source_dir, tmp_path):
    from acn_pyg.ensemble import ensemble_test

    example.main(tiny_args(source_dir, tmp_path, "--no-plot"))
    best = tmp_path / "run" / "best.pt"
    state = torch.load(best, weights_only=True)
    key = next(k for k, v in state.items() if k.startswith("convs.0.linear") and v.numel() > 1)
    state[key] = state[key].flip(0)  # same shape, other order: loads, means something else
    cache = str(tmp_path / "cache")
    ensemble_test([str(tmp_path / "run")], device="cpu", cache_dir=cache)  # cached as it was
    torch.save(state, best)
    with pytest.raises(ValueError, match="does not match this code"):
        ensemble_test([str(tmp_path / "run")], device="cpu")
    # The cache holds the old weights' predictions; the new bytes are not found there.
    with pytest.raises(ValueError, match="does not match this code"):
        ensemble_test([str(tmp_path / "run")], device="cpu", cache_dir=cache)
    assert len(os.listdir(cache)) == 1  # and a checkpoint that fails the check is not stored


def test_summary_says_better_or_worse_than_the_baseline():
    from acn_pyg.training import summary
    metrics = {"unit": "eV", "model": "acn", "target": "U0", "test_mae": 0.1,
               "baseline_test_mae": 0.5, "epochs": 3, "wall_time_s": 60.0, "device": "cpu",
               "sizes": {"train": 10}, "train_mae": 0.05, "best_val_mae": 0.09}
    text = "\n".join(summary(metrics))
    assert "5.0x better" in text and "training molecules: 0.05 eV" in text
    text = "\n".join(summary({**metrics, "test_mae": 1.0}))
    assert "2.0x worse" in text and "better" not in text


def test_one_tolerance_decides_whether_a_checkpoint_reproduces_its_run():
    from acn_pyg.training import REPRODUCE_RTOL, reproduces
    assert reproduces(0.04, 0.04 * (1 + 0.5 * REPRODUCE_RTOL))
    assert not reproduces(0.04, 0.04 * (1 + 2 * REPRODUCE_RTOL))
    assert not reproduces(0.04 * (1 + 2 * REPRODUCE_RTOL), 0.04)


def test_an_epoch_cut_short_by_the_time_budget_is_counted_as_part(source_dir, tmp_path,
                                                                  monkeypatch, capsys):
    import acn_pyg.training as training
    example.main(tiny_args(source_dir, tmp_path, "--no-plot"))
    full = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert full["epochs"] == 2 and full["steps"] == 4 and full["epochs_trained"] == 2.0
    assert "2 epochs in" in capsys.readouterr().out
    # A clock that advances one second each time it is read: the budget of
    # 0.1 min runs out during an epoch (two steps each), after its first step.
    clock = iter(range(10 ** 6))
    monkeypatch.setattr(training.time, "perf_counter", lambda: float(next(clock)))
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--time-budget", "0.1")
    args[args.index("--epochs") + 1] = "50"
    example.main(args)
    cut = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert cut["steps"] % 2 == 1 and cut["epochs"] == (cut["steps"] + 1) // 2
    assert cut["epochs_trained"] == cut["steps"] / 2
    assert f"{cut['epochs_trained']:.2f} epochs (the last cut short" in capsys.readouterr().out


def test_error_statistics_on_a_worked_example(monkeypatch):
    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
    from error_analysis import error_statistics, group_mae
    err = torch.tensor([-1.0, 2.0, 0.0, 3.0] + [1.0] * 96)  # 100 molecules, summed error 102
    s = error_statistics(err)
    assert s["n"] == 100 and s["mae"] == pytest.approx(1.02) and s["max"] == 3.0
    assert s["rmse"] == pytest.approx(((1 + 4 + 9 + 96) / 100) ** 0.5)
    assert s["share_worst_1pct"] == pytest.approx(3 / 102)  # one molecule: the 3.0
    assert s["share_worst_5pct"] == pytest.approx((3 + 2 + 1 + 1 + 1) / 102)
    assert s["mae_without_worst_1pct"] == pytest.approx(99 / 99)
    assert s["q0.5"] == 1.0 and s["q0.999"] <= 3.0
    groups = group_mae(torch.tensor([1.0, -3.0, 2.0]), ["a", "b", "a"])
    assert groups == {"a": {"n": 2, "mae": 1.5}, "b": {"n": 1, "mae": 3.0}}


def test_error_analysis_script_end_to_end(source_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
    import error_analysis
    runs = two_seeded_runs(source_dir, tmp_path)
    stem = tmp_path / "ea" / "out"
    assert error_analysis.main([*runs, "--device", "cpu", "--cache", str(tmp_path / "cache"),
                                "--worst", "3", "--out", str(stem)]) == 0
    saved = json.loads(stem.with_suffix(".json").read_text())
    assert list(saved["analysis"]) == runs + ["mean of the 2"]
    for run in runs:  # the analysis is of the run's own test error
        own = json.loads((pathlib.Path(run) / "metrics.json").read_text())
        assert saved["analysis"][run]["statistics"]["mae"] == pytest.approx(
            own["test_mae_kcal_mol"], rel=1e-4)
        by_size = saved["analysis"][run]["by_heavy_atoms"]
        assert sum(g["n"] for g in by_size.values()) == 8 == saved["test_size"]
        assert sum(g["n"] * g["mae"] for g in by_size.values()) / 8 == pytest.approx(
            saved["analysis"][run]["statistics"]["mae"])
        worst = saved["analysis"][run]["worst"]
        assert len(worst) == 3 and abs(worst[0]["error"]) >= abs(worst[-1]["error"])
        assert abs(worst[0]["error"]) == pytest.approx(saved["analysis"][run]["statistics"]["max"])
        # The full data set has SMILES: each molecule is charge-separated or neutral.
        by_charge = saved["analysis"][run]["by_charge_separation"]
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


def test_weight_average_script_on_a_lineage(source_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
    import weight_average
    example.main(tiny_args(source_dir, tmp_path, "--no-plot"))
    warm = tiny_args(source_dir, tmp_path, "--no-plot", "--lr", "3e-4", "--init-from",
                     str(tmp_path / "run" / "best.pt"))
    warm[warm.index("--out") + 1] = str(tmp_path / "warm")
    example.main(warm)
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
    other = tiny_args(source_dir, tmp_path, "--no-plot", "--hidden-channels", "16")
    other[other.index("--out") + 1] = str(tmp_path / "other")
    example.main(other)
    with pytest.raises(SystemExit, match="hidden_channels"):
        weight_average.main([runs[0], str(tmp_path / "other"), "--device", "cpu"])
