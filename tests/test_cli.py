import argparse
import dataclasses

import pytest
import torch

from acn_pyg.train import (ACN_FIELDS, Config, add_config_arguments, config_from_args,
                           epochs_cell, epochs_trained)


def parser(**kwargs) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_config_arguments(p, **kwargs)
    return p


def test_every_config_field_has_a_flag_and_no_flags_give_the_defaults():
    args = parser().parse_args([])
    fields = {f.name for f in dataclasses.fields(Config)}
    assert fields - set(vars(args)) == {"plot"}
    assert config_from_args(args) == Config()


def test_flags_reach_the_config():
    args = parser().parse_args(["--hidden-irreps", "8x0e+2x1o", "--product-channels", "4",
                                "--radial-gain", "10", "--no-reuse-memory", "--many-body",
                                "--init-seed", "3", "--target", "gap", "--embedding-std", "0.45",
                                "--no-residual"])
    cfg = config_from_args(args, train_size=50)
    assert (cfg.hidden_irreps, cfg.product_channels, cfg.radial_gain) == ("8x0e+2x1o", 4, 10.0)
    assert (cfg.reuse_memory, cfg.many_body, cfg.init_seed) == (False, True, 3)
    assert (cfg.target, cfg.train_size, cfg.plot) == ("gap", 50, True)
    assert cfg.embedding_std == 0.45 and cfg.residual is False


def test_the_program_trains_plain_weights_unless_asked_for_weight_norm():
    from acn_pyg.nn import NormalizedLinear
    from acn_pyg.train import build_model
    for flags, normed in (([], False), (["--weight-norm"], True), (["--no-weight-norm"], False)):
        cfg = config_from_args(parser().parse_args(flags + ["--hidden-channels", "8"]))
        assert cfg.weight_norm is normed
        model = build_model(cfg, True, 0.0, 1.0, None)
        assert model.weight_norm is normed
        assert any(isinstance(m, NormalizedLinear) for m in model.modules()) is normed


def test_the_program_builds_maces_ingredients_when_asked():
    from acn_pyg.train import build_model
    cfg = config_from_args(parser().parse_args(["--hidden-channels", "8"]))
    plain = build_model(cfg, True, 0.0, 1.0, None)
    assert (plain.product_correlation, plain.element_dependent, plain.scalar_activation) == (
        2, False, True)
    cfg = config_from_args(parser().parse_args(
        ["--hidden-channels", "8", "--product-channels", "2", "--product-correlation", "3",
         "--element-dependent", "--no-scalar-activation", "--product-basis",
         "--input-linear", "--self-interaction-rank", "2"]))
    model = build_model(cfg, True, 0.0, 1.0, None)
    assert (model.product_correlation, model.element_dependent, model.scalar_activation,
            model.product_basis, model.input_linear) == (3, True, False, True, True)
    assert all(conv.product.correlation == 3 and conv.self_weights is not None
               and conv.product.contract and conv.self_mix.rank == 2 for conv in model.convs)
    assert not plain.product_basis and not plain.input_linear
    with pytest.raises(SystemExit):
        parser().parse_args(["--product-correlation", "4"])


def test_defaults_and_skipped_fields():
    p = parser(defaults=Config(batch_size=8), skip=("seed", "out"))
    args = p.parse_args([])
    assert args.batch_size == 8 and not hasattr(args, "seed") and not hasattr(args, "out")
    with pytest.raises(SystemExit):
        p.parse_args(["--seed", "1"])
    with pytest.raises(ValueError, match="no Config field"):
        parser(skip=("sed",))


def test_target_help_names_the_default_with_its_meaning_and_unit():
    for target, gloss in (("U0", "internal energy at 0 K in eV"),
                          ("gap", "HOMO-LUMO gap in eV"), ("13", "298.15 K in eV")):
        text = " ".join(parser(defaults=Config(target=target)).format_help().split())
        assert f"(default: {target}, " in text and gloss in text


def test_acn_fields_are_config_fields():
    assert set(ACN_FIELDS) <= {f.name for f in dataclasses.fields(Config)}


def test_learning_curve_script_gives_acn_its_options_and_the_baselines_theirs(monkeypatch):
    import pathlib
    import sys
    benchmarks = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))
    sys.modules.pop("learning_curve", None)
    import learning_curve

    configs = []

    class Stop(Exception):
        pass

    def fake_run(cfg):
        configs.append(cfg)
        raise Stop

    monkeypatch.setattr(learning_curve, "run", fake_run)
    flags = ["--sizes", "1000", "--budgets", "48", "--batch-size", "8", "--hidden-irreps",
             "64x0e+16x1o+16x2e", "--product-channels", "16", "--weight-decay", "0.05",
             "--init-seed", "3", "--denoise-weight", "0.5", "--runs", "runs/x"]
    for model in ("acn", "schnet"):
        with pytest.raises(Stop):
            learning_curve.main(flags + ["--models", model])
    acn, schnet = configs
    assert (acn.model, acn.target, acn.train_size, acn.time_budget) == ("acn", "U_atom", 1000, 48)
    assert (acn.hidden_irreps, acn.product_channels, acn.batch_size) == ("64x0e+16x1o+16x2e",
                                                                         16, 8)
    assert (acn.seed, acn.init_seed, acn.test_size, acn.out) == (0, 3, 10000, "runs/x/acn_n1000")
    assert acn.denoise_weight == 0.5
    assert schnet.model == "schnet" and schnet.weight_decay == 0.05
    assert all(getattr(schnet, f) == getattr(Config(), f) for f in ACN_FIELDS)


def test_learning_curve_script_end_to_end_writes_its_table_and_compute(source_dir, tmp_path,
                                                                       monkeypatch, capsys):
    import json
    import pathlib
    import sys
    benchmarks = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))
    sys.modules.pop("learning_curve", None)
    import learning_curve

    torch.set_default_dtype(torch.float32)  # as the training program runs
    out = tmp_path / "lc"
    assert learning_curve.main([
        "--sizes", "16", "--budgets", "0.05", "--models", "acn", "--val-size", "8",
        "--test-size", "8", "--batch-size", "8", "--hidden-channels", "8", "--num-layers", "1",
        "--root", str(tmp_path / "qm9"), "--data-source", source_dir,
        "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    saved = json.loads(out.with_suffix(".json").read_text())
    (row,) = saved["rows"]
    run = row["runs"]["acn"]
    metrics = json.loads((tmp_path / "runs" / "acn_n16" / "metrics.json").read_text())
    assert row["train_size"] == 16 and run["test_mae"] == metrics["test_mae"]
    assert run["epochs_trained"] == metrics["steps"] / 2 and run["epochs"] == metrics["epochs"]
    text = out.with_suffix(".md").read_text()
    assert "| 16 |" in text and "acn N=16:" in text and "epochs" in text
    assert "acn N=16:" in capsys.readouterr().out


def test_tables_show_the_epochs_trained_not_begun():
    cut = {"epochs": 10, "epochs_trained": 9.60702875399361}  # a time budget cut the last
    assert (epochs_trained(cut), epochs_cell(cut)) == (9.60702875399361, "9.61")
    assert epochs_cell({"epochs": 134, "epochs_trained": 134.0}) == "134"
    assert epochs_cell({"epochs": 17}) == "17"  # metrics without epochs_trained
