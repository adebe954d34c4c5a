"""Models and runs saved by acn_pyg 0.3.0 (layout version 1 of IrrepsLinear
and RadialMLP: unit-scale linear weights, radial gain in the initial weights)
load into this version and compute the same numbers. The files in fixtures/
were written by acn_pyg 0.3.0."""
import json
import pathlib
import shutil
import sys

import pytest
import torch

from molecules import batch_of_molecules

from acn_pyg import AtomCloudNet
from acn_pyg.nn import IrrepsLinear, RadialMLP
from acn_pyg.train import evaluate, load_best_model, prepare
from acn_pyg.train.data import make_loaders

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def _float32():
    torch.set_default_dtype(torch.float32)


def test_a_state_dict_of_version_0_3_gives_its_outputs():
    saved = torch.load(FIXTURES / "acn_pyg_0.3.0_model.pt", weights_only=True)
    assert saved["acn_pyg"] == "0.3.0"
    kwargs = dict(saved["kwargs"], atomref=torch.tensor(saved["kwargs"]["atomref"]))
    model = AtomCloudNet(**kwargs).double().eval()
    model.load_state_dict(saved["state_dict"])
    _, z, pos, batch = batch_of_molecules()
    with torch.no_grad():
        out = model(z, pos, batch)
    torch.testing.assert_close(out, saved["output"], rtol=1e-10, atol=1e-10)
    # Saved again, it is version 2 and loads as it is.
    again = AtomCloudNet(**kwargs).double().eval()
    again.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again(z, pos, batch), out)
    # The stored weights changed layout: the conversion did something.
    old = saved["state_dict"]["convs.0.linear.weights.0"]
    assert not torch.allclose(model.state_dict()["convs.0.linear.weights.0"], old)


def _old_run(source_dir, tmp_path):
    """The config and split of the run in fixtures/ (acn_pyg 0.3.0, weight
    average on), with its best.pt and last.pt in tmp_path/run."""
    sys.path.insert(0, str(EXAMPLES))
    import qm9 as example
    run = json.loads((FIXTURES / "acn_pyg_0.3.0_run.json").read_text())
    args = example.parse_args(run["args"] + ["--root", str(tmp_path / "qm9"), "--data-source",
                                             source_dir, "--out", str(tmp_path / "run"),
                                             "--device", "cpu"])
    from acn_pyg.train import config_from_args
    cfg = config_from_args(args)
    (tmp_path / "run").mkdir()
    for name in ("best.pt", "last.pt"):
        shutil.copy(FIXTURES / f"acn_pyg_0.3.0_{name}", tmp_path / "run" / name)
    return cfg, run["test_mae"]


def test_a_run_of_version_0_3_tests_as_it_did_and_warm_starts(source_dir, tmp_path):
    from acn_pyg.train.checkpoints import load_weights
    cfg, test_mae = _old_run(source_dir, tmp_path)
    assert cfg.radial_gain == 3.0  # a gain that the conversion must divide out
    prep = prepare(cfg)
    loaders, _ = make_loaders(cfg, prep, torch.device("cpu"))
    best = load_best_model(str(tmp_path / "run"), cfg, prep, "cpu")
    assert evaluate(best, loaders["test"], prep.t_index, "cpu") == pytest.approx(test_mae,
                                                                                 rel=1e-5)
    # The weight average of its last.pt (saved without layout versions) is
    # the same model.
    warm = load_best_model(str(tmp_path / "run"), cfg, prep, "cpu")
    warm.load_state_dict(load_weights(str(tmp_path / "run" / "last.pt")))
    for key, value in best.state_dict().items():
        torch.testing.assert_close(warm.state_dict()[key], value)


def test_resuming_a_run_of_another_layout_is_refused_with_the_way_on(source_dir, tmp_path):
    from acn_pyg.train import run
    cfg, _ = _old_run(source_dir, tmp_path)
    cfg.resume = True
    with pytest.raises(ValueError, match=r"another acn_pyg.*--init-from .*last\.pt"):
        run(cfg)


@pytest.mark.parametrize("module, key", [
    (lambda: IrrepsLinear("4x0e+2x1o", "3x0e+1x1o"), ""),
    (lambda: RadialMLP(4, 8, 6, gain=2.0), ""),
    (lambda: AtomCloudNet(hidden_channels=8, num_layers=1), "convs.0.radial"),
])
def test_a_newer_layout_is_refused(module, key):
    state = module().state_dict()
    state._metadata[key]["version"] = 3
    with pytest.raises(ValueError, match="layout version 3, newer"):
        module().load_state_dict(state)


def test_the_weight_average_keeps_the_layout_versions():
    from acn_pyg.utils.ema import ExponentialMovingAverage, averaged_module_state
    model = AtomCloudNet(hidden_channels=8, num_layers=1)
    state = ExponentialMovingAverage(model, 0.9).state_dict()
    assert state._metadata["module.convs.0.linear"]["version"] == 2
    assert averaged_module_state(state)._metadata["convs.0.radial"]["version"] == 2


def test_a_run_folder_of_version_0_3_loads_with_load_model_and_tests_again(
        source_dir, tmp_path, capsys):
    """A bare best.pt with the metrics.json of its run (how acn_pyg <= 0.4
    left the runs behind the README's results) loads with the function that
    loads current checkpoints, and `acn-pyg test` gives its test MAE."""
    from dataclasses import asdict

    from acn_pyg import load_model
    from acn_pyg.cli import main
    cfg, test_mae = _old_run(source_dir, tmp_path)
    run_dir = tmp_path / "run"
    (run_dir / "metrics.json").write_text(json.dumps({"config": asdict(cfg),
                                                      "test_mae": test_mae}))
    prep = prepare(cfg)
    model = load_model(str(run_dir))
    assert not model.training
    loaders, _ = make_loaders(cfg, prep, torch.device("cpu"))
    assert evaluate(model, loaders["test"], prep.t_index, "cpu") == pytest.approx(test_mae,
                                                                                  rel=1e-5)
    assert main(["test", str(run_dir / "best.pt"), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_mae"] == pytest.approx(result["reported"]["test_mae"], rel=1e-5)
    assert result["target"] == "U0" and result["unit"] == "eV"
