import json
import pathlib
import sys

import pytest
import torch

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import qm9 as example  # noqa: E402

from acn_pyg.train import LinearBaseline, lr_factor, predict, split_indices  # noqa: E402


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


def two_seconds_a_step(monkeypatch):
    """The training loop's clock advances two seconds with each optimizer
    step and stands still otherwise: time budgets run out at known steps."""
    import acn_pyg.train.loop as loop
    now = [0.0]
    real_step = loop.take_step

    def slow_step(*args, **kwargs):
        now[0] += 2.0
        return real_step(*args, **kwargs)
    monkeypatch.setattr(loop.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(loop, "take_step", slow_step)


def test_end_to_end_writes_metrics_plot_and_checkpoints(source_dir, tmp_path, capsys):
    assert example.main(tiny_args(source_dir, tmp_path, "--target", "gap")) == 0
    out = capsys.readouterr().out
    assert "test MAE (acn, gap)" in out and "kcal/mol" in out and "linear baseline" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["unit"] == "eV" and metrics["sizes"]["train"] == 16
    assert metrics["test_mae"] > 0 and "test_mae_meV" in metrics
    assert "on its training molecules" in out
    # The training-set error is that of the best checkpoint on the training split.
    from acn_pyg.train import load_best_model, prepare, run_config
    from torch_geometric.loader import DataLoader
    cfg = run_config(metrics)
    prep = prepare(cfg)
    model = load_best_model(str(tmp_path / "run"), cfg, prep, "cpu")
    pred, true = predict(model, DataLoader(prep.dataset[prep.split["train"]], batch_size=5),
                         prep.t_index, "cpu")
    assert metrics["train_mae"] == pytest.approx(float((pred - true).abs().mean()), rel=1e-5)
    assert metrics["train_mae"] != pytest.approx(metrics["test_mae"], rel=1e-3)
    for name in ("parity.png", "learning_curve.png", "best.pt", "last.pt"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    # The CPU model is recorded: machines of one kind differ, and so do their speeds.
    assert isinstance(metrics["machine"]["cpu"], str) and metrics["machine"]["cpu"]


def test_cpu_model_reads_proc_cpuinfo_or_falls_back(monkeypatch):
    import builtins
    import platform

    from acn_pyg.train import cpu_model
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
    import acn_pyg.train.loop as loop
    real_save_last, saved = loop.save_last, []

    def save_then_die(*a, **k):
        real_save_last(*a, **k)
        saved.append(a[0])
        if len(saved) == 2:
            raise KeyboardInterrupt

    out = ["--out", str(tmp_path / "cut")]
    monkeypatch.setattr(loop, "save_last", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        example.main(args + out)
    monkeypatch.setattr(loop, "save_last", real_save_last)
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
    import acn_pyg.train.experiment as experiment

    calls = []
    monkeypatch.setattr(experiment, "reuse_freed_memory", lambda enable=True: calls.append(enable))
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
    from acn_pyg.train import load_weights
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


def test_summary_says_better_or_worse_than_the_baseline():
    from acn_pyg.train import summary
    metrics = {"unit": "eV", "model": "acn", "target": "U0", "test_mae": 0.1,
               "baseline_test_mae": 0.5, "epochs": 3, "wall_time_s": 60.0, "device": "cpu",
               "sizes": {"train": 10}, "train_mae": 0.05, "best_val_mae": 0.09}
    text = "\n".join(summary(metrics))
    assert "5.0x better" in text and "training molecules: 0.05 eV" in text
    text = "\n".join(summary({**metrics, "test_mae": 1.0}))
    assert "2.0x worse" in text and "better" not in text


def test_an_epoch_cut_short_by_the_time_budget_is_counted_as_part(source_dir, tmp_path,
                                                                  monkeypatch, capsys):
    example.main(tiny_args(source_dir, tmp_path, "--no-plot"))
    full = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert full["epochs"] == 2 and full["steps"] == 4 and full["epochs_trained"] == 2.0
    assert "2 epochs in" in capsys.readouterr().out
    # The budget of 0.1 min runs out during the second epoch (two steps
    # each), after its first step.
    two_seconds_a_step(monkeypatch)
    args = tiny_args(source_dir, tmp_path, "--no-plot", "--time-budget", "0.1")
    args[args.index("--epochs") + 1] = "50"
    example.main(args)
    cut = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (cut["steps"], cut["epochs"], cut["epochs_trained"]) == (3, 2, 1.5)
    assert f"{cut['epochs_trained']:.2f} epochs (the last cut short" in capsys.readouterr().out


def test_progress_bar_tracks_the_time_budget_or_the_epochs(source_dir, tmp_path, capsys):
    from acn_pyg.train.loop import _Progress

    timed = _Progress("acn U0", budget_s=180.0, epochs=1000, start=0.0)
    assert timed.bar.total == 180.0 and timed.bar.unit == "s"
    timed.update(0.25)
    assert timed.bar.n == pytest.approx(45.0)
    timed.close(1.0)
    assert timed.bar.n == pytest.approx(180.0)
    by_epochs = _Progress("acn U0", budget_s=float("inf"), epochs=40, start=0.5)
    assert by_epochs.bar.total == 40 and by_epochs.bar.n == pytest.approx(20.0)
    by_epochs.close(1.0)
    # A run that ends by its epochs, long before its budget, ends the bar at 100%.
    example.main(tiny_args(source_dir, tmp_path, "--no-plot"))
    assert "100%" in capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]


def test_plots_show_the_error_and_the_learning_curve(tmp_path):
    from acn_pyg.train.report import learning_curve_plot, parity_figure, parity_plot

    # Totals far from zero (QM9's U0): the parity axes show them less the
    # per-element baseline, where an error of 0.1 is visible.
    true = torch.linspace(-400.0, -300.0, 50, dtype=torch.float64)
    baseline = true + torch.linspace(-1.0, 1.0, 50, dtype=torch.float64)
    pred = true + 0.1
    fig = parity_figure(pred, true, baseline, "t", "eV")
    lo, hi = fig.axes[0].get_xlim()
    assert -2.0 < lo < -0.9 and 0.9 < hi < 2.0
    assert fig.axes[1].get_xlim()[0] < 0.1 < fig.axes[1].get_xlim()[1]
    parity_plot(pred, true, baseline, "t", "eV", str(tmp_path / "parity.png"))
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_mae": 2.0 / e} for e in range(1, 6)]
    history.append({"epoch": 6, "train_loss": None, "val_mae": 0.3})
    learning_curve_plot(history, 0.5, "t", "eV", str(tmp_path / "curve.png"))
    for name in ("parity.png", "curve.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
