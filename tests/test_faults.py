"""Faults and bad input in the training program: a failed or killed save
keeps the last good checkpoint, a resume of other flags and a second run on
one folder are refused, bad sizes and budgets are refused before any work,
metrics are strict JSON, unreadable checkpoints are named."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from acn_pyg.train import split_indices
from acn_pyg.utils.io import RunLock, atomic_save, load_checkpoint

from test_qm9_example import example, tiny_args, two_seconds_a_step


@pytest.fixture(autouse=True)
def _float32():
    torch.set_default_dtype(torch.float32)


def strict_load(path):
    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")
    return json.loads(pathlib.Path(path).read_text(), parse_constant=refuse)


@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_save_keeps_the_last_good_checkpoint(source_dir, tmp_path, monkeypatch, fault):
    args = tiny_args(source_dir, tmp_path, "--no-plot")
    example.main(args)
    run = tmp_path / "run"
    before = {name: (run / name).read_bytes() for name in ("last.pt", "best.pt")}

    def failing_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")  # what a full disk or a kill leaves behind
        raise fault
    monkeypatch.setattr(torch, "save", failing_save)
    longer = args.copy()
    longer[longer.index("--epochs") + 1] = "4"
    with pytest.raises(type(fault)):
        example.main(longer + ["--resume"])
    monkeypatch.undo()
    for name, data in before.items():
        assert (run / name).read_bytes() == data
    assert not [p for p in os.listdir(run) if ".part" in p]
    assert load_checkpoint(str(run / "last.pt"))["epoch"] == 2
    example.main(longer + ["--resume"])  # and the run goes on from it
    assert strict_load(run / "metrics.json")["epochs"] == 4


def test_atomic_save_replaces_the_file_whole(tmp_path):
    path = str(tmp_path / "x.pt")
    atomic_save({"a": torch.ones(3)}, path)
    atomic_save({"a": torch.zeros(2)}, path)
    assert torch.equal(load_checkpoint(path)["a"], torch.zeros(2))
    assert os.listdir(tmp_path) == ["x.pt"]


@pytest.mark.parametrize("flag, value", [("--seed", "1"), ("--target", "gap"),
                                         ("--train-size", "8"), ("--batch-size", "4"),
                                         ("--hidden-channels", "4")])
def test_resume_refuses_other_flags_and_names_them(source_dir, tmp_path, flag, value):
    args = tiny_args(source_dir, tmp_path, "--no-plot")
    example.main(args)
    first = strict_load(tmp_path / "run" / "metrics.json")
    other = args.copy()
    if flag in other:
        other[other.index(flag) + 1] = value
    else:
        other += [flag, value]
    with pytest.raises(ValueError, match=f"last.pt was trained with {flag} .*here"):
        example.main(other + ["--resume"])
    # Nothing was written: the folder still holds the first run.
    assert strict_load(tmp_path / "run" / "metrics.json") == first


def test_a_second_run_on_one_folder_is_refused(source_dir, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from acn_pyg.utils.io import RunLock; "
         f"lock = RunLock({str(out)!r}).__enter__(); print('locked', flush=True); "
         "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=f"{out}' is in use by another run \\(pid "
                                               f"{holder.pid}\\)"):
            example.main(tiny_args(source_dir, tmp_path, "--no-plot"))
        assert not (out / "last.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    # A killed run leaves no lock behind.
    assert example.main(tiny_args(source_dir, tmp_path, "--no-plot")) == 0
    with RunLock(str(out)):
        with pytest.raises(RuntimeError, match="in use"):
            RunLock(str(out)).__enter__()


@pytest.mark.parametrize("flag, value, match", [
    ("--test-size", "-130700", "--test-size must be a whole number >= 1"),
    ("--train-size", "0", "--train-size must be"), ("--val-size", "0", "--val-size must be"),
    ("--test-size", "0", "--test-size must be"), ("--epochs", "0", "--epochs must be"),
    ("--batch-size", "0", "--batch-size must be"),
    ("--time-budget", "nan", "--time-budget must be"),
    ("--time-budget", "0", "--time-budget must be"),
    ("--time-budget", "-1", "--time-budget must be"),
    ("--lr", "0", "--lr must be"), ("--lr", "nan", "--lr must be"),
    ("--ema", "1", "--ema must be"), ("--weight-decay", "-1", "--weight-decay must be"),
    ("--threads", "-2", "--threads must be"),
])
def test_bad_sizes_and_budgets_are_refused_before_any_work(source_dir, tmp_path, flag, value,
                                                           match):
    args = tiny_args(source_dir, tmp_path, "--no-plot")
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    with pytest.raises(ValueError, match=match):
        example.main(args)
    assert not (tmp_path / "run").exists() and not (tmp_path / "qm9").exists()


def test_split_sizes_must_be_non_negative_and_fit():
    with pytest.raises(ValueError, match="split size 'val' must be a whole number >= 0"):
        split_indices(130831, 100, -20, 50, 0)
    with pytest.raises(ValueError, match="exceeds"):
        split_indices(10, 5, 5, 5, seed=0)
    parts = split_indices(100, 0, 10, 30, seed=0)
    assert parts["train"].numel() == 0 and parts["test"].numel() == 30


def test_metrics_are_strict_json(source_dir, tmp_path, monkeypatch):
    # One step per epoch, validation every second epoch, two seconds a step:
    # the 6-second budget runs out as the third epoch ends, unvalidated, and
    # the run ends with a validation that has no epoch's training loss: null,
    # not NaN.
    two_seconds_a_step(monkeypatch)
    args = tiny_args(source_dir, tmp_path, "--time-budget", "0.1")
    for flag, value in (("--epochs", "50"), ("--train-size", "8"), ("--val-size", "16")):
        args[args.index(flag) + 1] = value
    example.main(args)
    metrics = strict_load(tmp_path / "run" / "metrics.json")
    assert [h["epoch"] for h in metrics["history"]] == [2, 3]
    assert metrics["history"][-1]["train_loss"] is None
    assert (tmp_path / "run" / "learning_curve.png").stat().st_size > 0


def test_an_unwritable_out_is_refused_before_any_work(source_dir, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    args = tiny_args(source_dir, tmp_path, "--no-plot")
    args[args.index("--out") + 1] = str(tmp_path / "file" / "run")
    with pytest.raises(ValueError, match="--out .*file/run' cannot be written to"):
        example.main(args)
    assert not (tmp_path / "qm9").exists()


def test_truncated_checkpoints_are_named(source_dir, tmp_path):
    args = tiny_args(source_dir, tmp_path, "--no-plot")
    example.main(args)
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"{last} is not a readable checkpoint"):
        example.main(args + ["--resume"])
    best = tmp_path / "run" / "best.pt"
    best.write_bytes(best.read_bytes()[:-200])
    with pytest.raises(ValueError, match=f"{best} is not a readable checkpoint"):
        example.main(tiny_args(source_dir, tmp_path, "--no-plot", "--init-from", str(best),
                               "--out", str(tmp_path / "warm")))
