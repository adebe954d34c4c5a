"""AtomCloudNet configurations trained like benchmarks/per_example.py (its
plain loop, its split, one CPU thread a run, two runs at once): which change
makes the model learn more per training example? Each configuration is a
label and Config fields of the AtomCloudNet (JSON), optionally with its own
learning rate, AMSGrad (true or false) and plateau patience in epochs
(default 5), and parts of MACE's parametrisation: "lr_scale": "fan_in"
(e3nn's unit weights: each weight matrix at lr / sqrt(fan-in),
per_example.fan_in_param_groups), "readout_hidden": n (MACE's readout, one
MLP of n units, per_example.one_readout), "layer_readouts": true (MACE's
linear readouts of the earlier layers, per_example.layer_readouts),
"radial_bias": false (radial MLPs without biases); the table is
per_example.py's. A configuration with "model": "mace" trains MACE instead,
its "mace" dict replacing some of per_example.mace_model's settings
(per_example.MACE_OPTIONS), and its "acn_layers" dict, if given, putting
AtomCloudConv layers with these options in place of MACE's interaction and
product blocks (per_example.acn_layers_in_mace; "residual": false replaces
the features instead of adding to them), or its "acn_parts" list putting
some of AtomCloudNet's parts in MACE's layers
(per_example.acn_parts_in_mace: "radial", "radial_nobias", "product",
"skip").

    python research/per_example_configs.py --minutes 10 \\
        --configs '{"label": "products 16", "config": {"product_channels": 16}}' \\
                  '{"label": "many-body", "config": {"many_body": true}}' \\
                  '{"label": "MACE, correlation 2", "model": "mace", "mace": {"correlation": 2}}'
"""
import argparse
import json
import os
import sys
from multiprocessing.pool import ThreadPool

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
import per_example  # noqa: E402

#: The keys a configuration may hold besides "label", "config" and "model",
#: copied into its jobs as they are.
JOB_KEYS = ("lr", "amsgrad", "patience", "mace", "acn_layers", "acn_parts", "lr_scale",
            "readout_hidden", "radial_bias", "radial_e3nn", "layer_readouts")


def jobs(configs: list, args) -> list:
    """One per_example job per configuration and seed."""
    from acn_pyg.train import Config

    out = []
    for c in configs:
        unknown = sorted(set(c) - {"label", "config", "model", *JOB_KEYS})
        if unknown or "label" not in c:
            raise ValueError(f"a configuration holds 'label' and optionally "
                             f"{', '.join(repr(k) for k in ('config', 'model') + JOB_KEYS)} "
                             f"(got {sorted(c)})")
        if c.get("lr_scale", "fan_in") != "fan_in":
            raise ValueError(f"'lr_scale' can only be \"fan_in\" (got {c['lr_scale']!r})")
        Config(**c.get("config", {}))  # an unknown field fails here, before any run
        for key in ("mace", "acn_layers", "acn_parts"):
            if key in c and c.get("model") != "mace":
                raise ValueError(f"'{key}' options need \"model\": \"mace\" (got {c})")
        if "mace" in c:
            per_example.check_mace_options(c["mace"])
        if "acn_layers" in c:
            per_example.check_acn_layers(c["acn_layers"])
        per_example.check_acn_parts(c.get("acn_parts", ()))
        for seed in args.seeds.split(","):
            job = dict(model=c.get("model", "acn"), size=args.size, seed=int(seed),
                       minutes=args.minutes, target="U0", val_size=500, test_size=1000,
                       batch_size=32, threads=1, root=os.path.abspath(args.root),
                       label=c["label"], config=c.get("config", {}))
            for key in JOB_KEYS:
                if key in c:
                    job[key] = c[key]
            out.append(job)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", required=True, help="JSON objects, as above")
    p.add_argument("--size", type=int, default=1000, help="(default: 1000)")
    p.add_argument("--seeds", default="0", help="(default: 0)")
    p.add_argument("--minutes", type=float, default=10.0, help="(default: 10)")
    p.add_argument("--budgets", default="1,4,10", help="(default: 1,4,10)")
    p.add_argument("--epochs", default="10,30,100", help="(default: 10,30,100)")
    p.add_argument("--root", default="data/QM9", help="(default: data/QM9)")
    p.add_argument("--mace-python", default=os.path.join(".venv-mace", "bin", "python"))
    p.add_argument("--out", required=True, help="output stem: .json, .md and .png")
    args = p.parse_args(argv)
    todo = jobs([json.loads(c) for c in args.configs], args)
    with ThreadPool(2) as pool:
        runs = pool.map(lambda job: per_example.launch(job, args.mace_python), todo,
                        chunksize=1)
    from common import save_results
    lines = [f"QM9 U0, {args.size} training molecules, {args.minutes:g} min a run on one CPU "
             "thread, two runs at once", ""]
    lines += per_example.table(runs, [float(b) for b in args.budgets.split(",")],
                               [int(e) for e in args.epochs.split(",")])
    lines += [f"- {r['label']}: {json.dumps(r.get('mace', r['config']))}" for r in runs]
    save_results(args.out, args, runs, lines, key="runs")
    per_example.plot(runs, args.out + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
