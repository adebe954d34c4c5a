"""benchmarks/gpu_learning_curve.sh builds the command lines of runs that
only ever execute on a lent GPU machine, where a wrong flag costs device time.
Here every run of a mode is started through a stand-in interpreter that
parses its flags with learning_curve.py's own parser and prints the Config
it would train, instead of training."""
import dataclasses
import json
import os
import pathlib
import stat
import subprocess
import sys


ROOT = pathlib.Path(__file__).resolve().parent.parent
STUB = """#!/bin/sh
# Any other script runs as it is (benchmarks/run_flags.py).
[ "$1" = benchmarks/learning_curve.py ] || exec {python} "$@"
shift
exec {python} -c '
import dataclasses, json, sys
sys.path.insert(0, "benchmarks")
import learning_curve

def show(cfg):
    print("CONFIG " + json.dumps(dataclasses.asdict(cfg)))
    raise SystemExit(0)

learning_curve.run = show
learning_curve.main(sys.argv[1:])
' "$@"
"""


def configs(tmp_path, mode, unset=(), **env):
    stub = tmp_path / "python"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "out"
    done = subprocess.run(["bash", "benchmarks/gpu_learning_curve.sh", str(out), mode],
                          cwd=ROOT, timeout=300, capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if k not in unset},
                               "PYTHON": str(stub), "PYTHONPATH": str(ROOT), **env})
    # No run trains here, so none leaves a result, and the script says so.
    assert done.returncode == 1 and "no run finished" in done.stderr, done.stderr
    found = {}
    for log in sorted(out.glob("*.log")):
        lines = [x for x in log.read_text().splitlines() if x.startswith("CONFIG ")]
        assert len(lines) == 1, f"{log.name} did not parse:\n{log.read_text()}"
        found[log.stem] = json.loads(lines[0][len("CONFIG "):])
    return found


WIDE = {"hidden_channels": 128, "hidden_irreps": "128x0e+32x1o+32x2e", "batch_size": 128,
        "weight_decay": 0.0, "train_size": 10000, "test_size": 10000, "val_size": 1000,
        "subset": "data/qm9_subset.pt", "target": "U_atom"}


def check_wide(cfg):
    assert {k: cfg[k] for k in WIDE} == WIDE


def differences(cfg, ref):
    """The fields where cfg differs from ref, but for where it writes."""
    return {k: v for k, v in cfg.items() if ref[k] != v and k != "out"}


def test_arch_mode_differs_from_its_control_only_in_the_named_flags(tmp_path):
    runs = configs(tmp_path, "10000-arch", BUDGET="8")
    assert set(runs) == {"acn_eq_wide_n10000_b128_control", "acn_eq_wide_l4_n10000_b128",
                         "acn_eq_wide_prod32_gain10_n10000_b128"}
    control = runs["acn_eq_wide_n10000_b128_control"]
    check_wide(control)
    assert control["time_budget"] == 8.0 and control["init_from"] is None
    assert differences(runs["acn_eq_wide_l4_n10000_b128"], control) == {"num_layers": 4}
    assert differences(runs["acn_eq_wide_prod32_gain10_n10000_b128"], control) == {
        "product_channels": 32, "radial_gain": 10.0}


def finished_run(prev, name, **model):
    """A run folder as learning_curve.py leaves it, with the wide model's
    config changed by :obj:`model`."""
    from acn_pyg.training import Config
    cfg = Config(model="acn", hidden_channels=128, hidden_irreps="128x0e + 32x1o + 32x2e",
                 batch_size=128, **model)
    folder = prev / name / "acn_n10000"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"config": dataclasses.asdict(cfg)}))


ARCH_RESULTS = ROOT / "benchmarks" / "results" / "gpu_h100_n10000_arch"


def ran_config(run):
    """The Config a finished run trained, as a dict (fields added since: their defaults)."""
    from acn_pyg.training import load_run, run_config
    return dataclasses.asdict(run_config(load_run(str(run))))


def recorded_call(tmp_path, results):
    """A call's three recorded runs laid out as the call left them
    (PREV/RUN/acn_n10000); returns PREV and the run names."""
    prev = tmp_path / "prev"
    names = [p.parent.name for p in results.glob("*/metrics.json")]
    assert len(names) == 3
    for name in names:
        (prev / name).mkdir(parents=True)
        (prev / name / "acn_n10000").symlink_to(results / name)
    return prev, names


def test_again_continues_each_finished_run_with_its_own_model_flags(tmp_path):
    # Stop 20's three 10000-arch runs as that call left them (OUT/RUN/acn_n10000),
    # and one more with the model flags those leave at their defaults.
    prev, arch = recorded_call(tmp_path, ARCH_RESULTS)
    finished_run(prev, "l5_mb", num_layers=5, many_body=True, cutoff=4.0, lmax=3)
    finished_run(prev, "dn", num_layers=4, denoise_weight=0.5, denoise_sigma=0.07)
    runs = configs(tmp_path, "10000-again", PREV=str(prev), BUDGET="3.3")
    assert len(runs) == 5
    # Each run keeps its own denoising, or none.
    assert {n: (c["denoise_weight"], c["denoise_sigma"]) for n, c in runs.items()
            if c["denoise_weight"]} == {"dn_warm_lr3e-4": (0.5, 0.07)}
    layers = {}
    for name, cfg in runs.items():
        check_wide(cfg)
        start = name[:-len("_warm_lr3e-4")]
        assert cfg["init_from"] == f"{prev}/{start}/acn_n10000/best.pt"
        assert (cfg["lr"], cfg["warmup"], cfg["time_budget"]) == (3e-4, 0.02, 3.3)
        layers[start] = (cfg["num_layers"], cfg["product_channels"], cfg["radial_gain"],
                         cfg["many_body"], cfg["cutoff"], cfg["lmax"])
        if start in arch:  # exactly what stop 20's second call ran from them
            ran = ran_config(ARCH_RESULTS / "second_call" / name)
            assert ran["init_from"].endswith(f"/{start}/acn_n10000/best.pt")
            assert {k: v for k, v in cfg.items() if ran[k] != v} == {
                "out": str(tmp_path / "out" / name / "acn_n10000"),
                "init_from": cfg["init_from"]}
    assert layers == {"acn_eq_wide_n10000_b128_control": (3, 0, 1.0, False, 5.0, 2),
                      "acn_eq_wide_l4_n10000_b128": (4, 0, 1.0, False, 5.0, 2),
                      "acn_eq_wide_prod32_gain10_n10000_b128": (3, 32, 10.0, False, 5.0, 2),
                      "l5_mb": (5, 0, 1.0, True, 4.0, 3),
                      "dn": (4, 0, 1.0, False, 5.0, 2)}
    # Stops 18 and 20 ran it under these names (as their results READMEs say).
    env = {k: v for k, v in os.environ.items() if k != "PREV"}
    for mode in ("10000-arch-again", "10000-wide-again"):
        done = subprocess.run(["bash", "benchmarks/gpu_learning_curve.sh", str(tmp_path / mode),
                               mode], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode != 0 and "set PREV to the OUT_DIR of the runs to continue" \
            in done.stderr


DENOISE_RESULTS = ROOT / "benchmarks" / "results" / "gpu_h100_n10000_denoise"


def test_again_only_continues_the_named_runs(tmp_path):
    # Stop 27's 10000-denoise call as it left its runs; its second call
    # continued the control alone.
    prev, _ = recorded_call(tmp_path, DENOISE_RESULTS)
    control = "acn_eq_wide_l4_n10000_b128"
    runs = configs(tmp_path, "10000-again", PREV=str(prev), BUDGET="3.3", ONLY=control)
    assert list(runs) == [f"{control}_warm_lr3e-4"]
    cfg = runs[f"{control}_warm_lr3e-4"]
    assert cfg["init_from"] == f"{prev}/{control}/acn_n10000/best.pt"
    assert cfg["denoise_weight"] == 0
    # What stop 27's second call ran, but for where it read and wrote.
    ran = ran_config(DENOISE_RESULTS / "second_call" / f"{control}_warm_lr3e-4")
    assert {k for k, v in cfg.items() if ran[k] != v} == {"out", "init_from"}
    # WD= keeps a decay for them (default 0, as above).
    (tmp_path / "wd").mkdir()
    wd = configs(tmp_path / "wd", "10000-again", PREV=str(prev), BUDGET="3.3", ONLY=control,
                 WD="0.3")
    assert differences(wd[f"{control}_warm_lr3e-4"], cfg) == {"weight_decay": 0.3}
    # Two names: both, and nothing else.
    (tmp_path / "two").mkdir()
    both = configs(tmp_path / "two", "10000-again", PREV=str(prev), BUDGET="3.3",
                   ONLY=f"{control} acn_eq_wide_l4_dn1_s0.1_n10000_b128")
    assert {n: c["denoise_sigma"] if c["denoise_weight"] else None
            for n, c in both.items()} == {
        f"{control}_warm_lr3e-4": None,
        "acn_eq_wide_l4_dn1_s0.1_n10000_b128_warm_lr3e-4": 0.1}
    # A name PREV does not hold stops the call before any run starts.
    done = subprocess.run(["bash", "benchmarks/gpu_learning_curve.sh", str(tmp_path / "x"),
                           "10000-again"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PREV": str(prev), "ONLY": f"{control} l9",
                               "PYTHON": sys.executable})
    assert done.returncode == 2
    assert f"ONLY names l9, but {prev}/l9/acn_n10000 does not exist" in done.stderr
    assert not list((tmp_path / "x").glob("*.log"))


def test_again_names_the_runs_it_cannot_continue(tmp_path):
    prev = tmp_path / "prev"
    (prev / "cut_short" / "acn_n10000").mkdir(parents=True)
    done = subprocess.run(["bash", "benchmarks/gpu_learning_curve.sh", str(tmp_path / "x"),
                           "10000-again"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PREV": str(prev), "PYTHONPATH": str(ROOT),
                               "PYTHON": sys.executable})
    assert done.returncode == 1
    assert "not continued: cut_short" in done.stderr and "has not finished" in done.stderr
    assert not list((tmp_path / "x").glob("*.log"))


def test_l4_long_mode_is_stop_20s_four_layer_run_alone_on_a_long_schedule(tmp_path):
    runs = configs(tmp_path, "10000-l4-long", unset=("BUDGET",))
    assert list(runs) == ["acn_eq_wide_l4_n10000_b128_long"]
    cfg = runs["acn_eq_wide_l4_n10000_b128_long"]
    check_wide(cfg)
    ran = ran_config(ARCH_RESULTS / "acn_eq_wide_l4_n10000_b128")
    assert differences(cfg, ran) == {"time_budget": 40.0}


def test_deep_mode_warm_starts_four_layers_beside_five_and_six(tmp_path):
    runs = configs(tmp_path, "10000-deep", INIT="some/best.pt")
    for cfg in runs.values():
        check_wide(cfg)
    assert {n: (c["num_layers"], c["init_from"]) for n, c in runs.items()} == {
        "acn_eq_wide_l4_n10000_b128_warm_lr3e-4": (4, "some/best.pt"),
        "acn_eq_wide_l5_n10000_b128": (5, None),
        "acn_eq_wide_l6_n10000_b128": (6, None)}
    # Without INIT, stop 20's 4-layer run from scratch again, as the control.
    (tmp_path / "scratch").mkdir()
    again = configs(tmp_path / "scratch", "10000-deep", unset=("INIT",), BUDGET="8")
    assert {n: (c["num_layers"], c["init_from"]) for n, c in again.items()} == {
        "acn_eq_wide_l4_n10000_b128": (4, None), "acn_eq_wide_l5_n10000_b128": (5, None),
        "acn_eq_wide_l6_n10000_b128": (6, None)}
    ran = ran_config(ARCH_RESULTS / "acn_eq_wide_l4_n10000_b128")
    control = again["acn_eq_wide_l4_n10000_b128"]
    assert {k for k, v in control.items() if ran[k] != v} == {"out"}


def test_grow_mode_starts_four_five_and_six_layers_from_one_checkpoint(tmp_path):
    runs = configs(tmp_path, "10000-grow", INIT="some/best.pt", BUDGET="8")
    for cfg in runs.values():
        check_wide(cfg)
        assert (cfg["init_from"], cfg["lr"], cfg["time_budget"]) == ("some/best.pt", 3e-4, 8.0)
    assert {n: (c["num_layers"], c["grow"]) for n, c in runs.items()} == {
        "acn_eq_wide_l4to4_n10000_b128_warm_lr3e-4": (4, False),
        "acn_eq_wide_l4to5_n10000_b128_warm_lr3e-4": (5, True),
        "acn_eq_wide_l4to6_n10000_b128_warm_lr3e-4": (6, True)}


def test_denoise_mode_runs_the_control_beside_denoising(tmp_path):
    from acn_pyg.training import Config
    runs = configs(tmp_path, "10000-denoise", INIT="some/best.pt", BUDGET="8")
    for cfg in runs.values():
        check_wide(cfg)
        assert cfg["num_layers"] == 4 and cfg["time_budget"] == 8.0
    assert {n: (c["denoise_weight"], c["denoise_sigma"], c["init_from"], c["lr"])
            for n, c in runs.items()} == {
        "acn_eq_wide_l4_n10000_b128": (0.0, Config.denoise_sigma, None, None),
        "acn_eq_wide_l4_dn1_s0.05_n10000_b128": (1.0, 0.05, None, None),
        "acn_eq_wide_l4_dn1_s0.05_n10000_b128_warm_lr3e-4": (1.0, 0.05, "some/best.pt", 3e-4)}
    # The control is stop 20's 4-layer run from scratch, flag for flag.
    ran = ran_config(ARCH_RESULTS / "acn_eq_wide_l4_n10000_b128")
    control = runs["acn_eq_wide_l4_n10000_b128"]
    assert {k for k, v in control.items() if ran[k] != v} == {"out"}
    (tmp_path / "scratch").mkdir()
    scratch = configs(tmp_path / "scratch", "10000-denoise", unset=("INIT",))
    assert scratch["acn_eq_wide_l4_dn1_s0.1_n10000_b128"]["denoise_sigma"] == 0.1
    assert len(scratch) == 3 and all(c["init_from"] is None for c in scratch.values())


L4_WARM_RESULTS = ROOT / "benchmarks" / "results" / "gpu_h200_n10000_l4_warm"


def test_l4_warm_mode_is_stop_29s_first_call_and_l4_reg_varies_only_the_regulariser(tmp_path):
    runs = configs(tmp_path, "10000-l4-warm", unset=("INIT",), BUDGET="8")
    assert list(runs) == ["acn_eq_wide_l4_n10000_b128_warm_solo"]
    cfg = runs["acn_eq_wide_l4_n10000_b128_warm_solo"]
    check_wide(cfg)
    ran = ran_config(L4_WARM_RESULTS / "first_call" / "acn_eq_wide_l4_n10000_b128_warm_solo")
    assert {k: v for k, v in cfg.items() if ran[k] != v} == {"out": cfg["out"]}
    # 10000-l4-reg: the same warm restart of the best kept model three times,
    # differing only in weight decay.
    (tmp_path / "reg").mkdir()
    reg = configs(tmp_path / "reg", "10000-l4-reg", unset=("INIT",), BUDGET="8")
    assert len(reg) == 3
    init = "benchmarks/checkpoints/h200x2_cpu2_n10000_wide_l4_wd0.25/best.pt"
    assert (ROOT / init).is_file()
    base = dict(cfg, init_from=init)
    assert {n: differences(c, base) for n, c in reg.items()} == {
        "acn_eq_wide_l4_n10000_b128_reg_wd0.1": {"weight_decay": 0.1},
        "acn_eq_wide_l4_n10000_b128_reg_wd0.2": {"weight_decay": 0.2},
        "acn_eq_wide_l4_n10000_b128_reg_wd0.3": {"weight_decay": 0.3}}
