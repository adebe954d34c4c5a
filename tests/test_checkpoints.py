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
