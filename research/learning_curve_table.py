"""Merges the JSON results of several ``benchmarks/learning_curve.py`` runs
(e.g. runs made in parallel on one GPU, each with its own variant) into one
markdown table beside the published learning curve, one row per run."""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
from learning_curve import PUBLISHED, TARGETS  # noqa: E402

from acn_pyg.train import epochs_cell, epochs_trained  # noqa: E402


def variant(args: dict, model: str, seed: bool = True) -> str:
    """A run's recipe in words; options recorded only since their flag exists
    are read with the value they had before it."""
    if model != "acn":
        return model
    parts = [f"acn {args.get('hidden_irreps') or str(args.get('hidden_channels', 64)) + 'x0e'}"]
    if args.get("num_layers", 3) != 3:
        parts.append(f"{args['num_layers']} layers")
    if args.get("lmax", 2) != 2:
        parts.append(f"lmax {args['lmax']}")
    if args.get("weight_decay"):
        parts.append(f"wd {args['weight_decay']}")
    if args.get("many_body"):
        parts.append("many-body")
    if args.get("cutoff", 5.0) != 5.0:
        parts.append(f"cutoff {args['cutoff']}")
    if args.get("product_channels", 0):
        parts.append(f"products {args['product_channels']}")
    if args.get("radial_gain", 1.0) != 1.0:
        parts.append(f"radial gain {args['radial_gain']:g}")
    if args.get("lr") is not None:
        parts.append(f"lr {args['lr']:g}")
    if args.get("init_from"):
        parts.append(f"warm start from {args['init_from']}")
    if args.get("warmup", 0.0):
        parts.append(f"warm-up {args['warmup']}")
    if args.get("stationary_weight", 0.0):  # an option of earlier versions' runs
        parts.append(f"stationary {args['stationary_weight']:g}")
    if args.get("denoise_weight", 0.0):
        parts.append(f"denoise {args['denoise_weight']:g} at {args.get('denoise_sigma', 0.05):g} A")
    if args.get("ema", 0.99) != 0.99:
        parts.append(f"EMA {args['ema']}")
    if seed and args.get("init_seed") is not None:
        parts.append(f"seed {args['init_seed']}")
    if args.get("compile"):
        parts.append("torch.compile")
    return ", ".join(parts)


def budget(args: dict, size: int) -> float:
    """The training minutes a run was given (``--budgets``, one per size)."""
    sizes = [int(s) for s in str(args["sizes"]).split(",")]
    return float(str(args["budgets"]).split(",")[sizes.index(size)])


def recipe_table(rows: list) -> list:
    """Markdown lines: the spread over seeds of every recipe (same training
    size, batch size, budget and options; the init seed varies)."""
    groups = {}
    for r in rows:
        key = (r["train_size"], r["recipe"], r["batch_size"], r["budget_min"])
        groups.setdefault(key, []).append(r)
    lines = ["| N train | recipe | batch | minutes | runs | mean | lowest | highest | "
             "under target | epochs |", "| --- " * 10 + "|"]
    for (n, recipe, batch, minutes), runs in sorted(groups.items()):
        maes = [r["test_mae_kcal_mol"] for r in runs]
        target = TARGETS.get(n)
        under = sum(m < target for m in maes) if target is not None else 0
        epochs = sorted(runs, key=epochs_trained)
        epochs = [epochs_cell(epochs[0]), epochs_cell(epochs[-1])]
        lines.append(f"| {n:,} | {recipe} | {batch} | {minutes:g} | {len(maes)} | "
                     f"{sum(maes) / len(maes):.3f} | {min(maes):.3f} | {max(maes):.3f} | "
                     f"{under} of {len(maes)} (< {target}) | "
                     f"{epochs[0]}{'' if epochs[0] == epochs[-1] else f'-{epochs[-1]}'} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("files", nargs="+", help="learning_curve.py JSON files")
    p.add_argument("--out", required=True, help="output stem (.md and .json)")
    p.add_argument("--by-recipe", action="store_true",
                   help="also one line per recipe, training size, batch size and budget over its "
                        "seeds: runs, mean, lowest, highest, runs under the target")
    args = p.parse_args(argv)
    rows = []
    # Files named by their path below the folder all of them share (just the
    # name when they sit side by side; run/lc.json for gpu_learning_curve.sh).
    common = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in args.files])
    for path in args.files:
        with open(path) as f:
            result = json.load(f)
        for row in result["rows"]:
            for model, run in row["runs"].items():
                rows.append({"file": os.path.relpath(os.path.abspath(path), common),
                             "train_size": row["train_size"],
                             "variant": variant(result["args"], model), "model": model,
                             "recipe": variant(result["args"], model, seed=False),
                             "batch_size": result["args"]["batch_size"],
                             "budget_min": budget(result["args"], row["train_size"]),
                             "resumed": result["args"].get("resume", False),
                             "machine": result["machine"], **run})
    rows.sort(key=lambda r: (r["train_size"], r["test_mae_kcal_mol"]))
    lines = ["| N train | variant | test MAE (kcal/mol) | target | met | CM | SLATM | "
             "original ACN | epochs | minutes | batch | params | device | file |",
             "| --- " * 14 + "|"]
    for r in rows:
        n = r["train_size"]
        pub = PUBLISHED.get(n, (float("nan"),) * 3)
        target = TARGETS.get(n)
        met = r["model"] == "acn" and target is not None and r["test_mae_kcal_mol"] < target
        lines.append(f"| {n:,} | {r['variant']} | {r['test_mae_kcal_mol']:.2f} | < {target} | "
                     f"{'yes' if met else 'no'} | {pub[0]} | {pub[1]} | {pub[2]} | "
                     f"{epochs_cell(r)} | {r['wall_time_s'] / 60:.1f} | {r['batch_size']} | "
                     f"{r['parameters']:,} | {r['machine'].get('cuda') or r['device']} | "
                     f"{r['file']} |")
    text = "QM9 U_atom, 10,000 held-out test molecules\n\n" + "\n".join(lines) + "\n"
    if args.by_recipe:
        text += "\n" + "\n".join(recipe_table(rows)) + "\n"
    print(text)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    with open(args.out + ".json", "w") as f:
        json.dump({"rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
