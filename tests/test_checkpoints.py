"""The checkpoints kept in ``benchmarks/checkpoints/`` (warm-start points for
later sessions) must still load into the model their run's config builds with
this code: a change of parameter names, shapes or layout breaks them here,
not in a session that needs them."""
import glob
import os

import pytest
import torch

from acn_pyg.training import (EXTENSIVE_TARGETS, build_model, load_run, load_weights,
                              run_config)

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "benchmarks", "checkpoints")
KEPT = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(ROOT, "*", "metrics.json")))


def test_checkpoints_are_kept():
    # benchmarks/checkpoints/README.md lists them; an empty folder means they were lost.
    assert KEPT, f"no checkpoints under {ROOT}"


@pytest.mark.parametrize("run_dir", KEPT, ids=[os.path.basename(d) for d in KEPT])
def test_checkpoint_loads_into_its_model(run_dir, molecule):
    metrics = load_run(run_dir)
    cfg = run_config(metrics)
    state = load_weights(os.path.join(run_dir, "best.pt"))  # as --init-from reads it
    # mean and std are not in a state dict (the run's data set them); they
    # do not change which weights a model has.
    model = build_model(cfg, cfg.target in EXTENSIVE_TARGETS, 0.0, 1.0, state.get("atomref"))
    assert sum(p.numel() for p in model.parameters()) == metrics["parameters"]
    model.load_state_dict(state, strict=True)
    z, pos = molecule
    with torch.no_grad():
        out = model(z, pos.to(torch.get_default_dtype()))
    assert out.shape == (1, 1) and torch.isfinite(out).all()


def test_keep_checkpoint_copies_a_run_that_reproduces_and_refuses_one_that_does_not(
        source_dir, tmp_path, monkeypatch, capsys):
    import pathlib
    import sys
    torch.set_default_dtype(torch.float32)  # as the training program runs
    repo = pathlib.Path(__file__).resolve().parent.parent
    monkeypatch.syspath_prepend(str(repo / "examples"))
    monkeypatch.syspath_prepend(str(repo / "benchmarks"))
    sys.modules.pop("keep_checkpoint", None)
    import keep_checkpoint
    import qm9 as example

    run = tmp_path / "run"
    example.main(["--train-size", "16", "--val-size", "8", "--test-size", "8", "--epochs", "2",
                  "--batch-size", "8", "--hidden-channels", "8", "--num-layers", "1",
                  "--root", str(tmp_path / "qm9"), "--data-source", source_dir, "--no-plot",
                  "--out", str(run)])
    monkeypatch.setattr(keep_checkpoint, "CHECKPOINTS", str(tmp_path / "kept"))
    assert keep_checkpoint.main([str(run), "tiny"]) == 0
    metrics = load_run(str(run))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("| `tiny` | 16 | 2 | ") and line.endswith(" | kcal/mol |")
    cells = [float(c) for c in line.split("|")[4:7]]
    assert cells == pytest.approx([metrics[k] * 23.0605 for k in
                                   ("train_mae", "best_val_mae", "test_mae")], abs=1.1e-3)
    for name in ("metrics.json", "best.pt"):
        assert (tmp_path / "kept" / "tiny" / name).read_bytes() == (run / name).read_bytes()
    with pytest.raises(SystemExit, match="exists"):
        keep_checkpoint.main([str(run), "tiny"])
    # Other weights of the same shapes: the test MAE is not the run's, so nothing is kept.
    state = torch.load(run / "best.pt", weights_only=True)
    torch.save({k: v.flip(0) if v.numel() > 1 else v for k, v in state.items()}, run / "best.pt")
    with pytest.raises(SystemExit, match="not kept"):
        keep_checkpoint.main([str(run), "other"])
    assert not (tmp_path / "kept" / "other").exists()
