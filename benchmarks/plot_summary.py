"""The benchmark summary figure, drawn from the JSON results of speed.py,
accuracy.py, learning_curve.py and scaling.py (whichever exist)."""
import argparse
import json
import os
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def load(name):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=os.path.join(RESULTS, "summary.png"),
                   help="output PNG (default: benchmarks/results/summary.png)")
    args = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed, accuracy, curve = load("speed_cpu.json"), load("accuracy.json"), \
        load("learning_curve.json")
    scaling = load("scaling_cpu.json")
    scaling_system = load("scaling_cpu_system_malloc.json")
    panels = [x for x in (speed, accuracy, curve, scaling) if x is not None]
    if not panels:
        print("no results to plot")
        return 1
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    axes = [axes] if len(panels) == 1 else list(axes)
    ax_iter = iter(axes)
    if speed is not None:
        ax = next(ax_iter)
        size = max(r["batch_size"] for r in speed["rows"])
        # Train-step throughput relative to SchNet, CPU and (where measured) GPU.
        series = [("CPU", speed), ("GPU", load("speed_cuda.json"))]
        series = [(label, res) for label, res in series if res is not None]
        models = [r["model"] for r in speed["rows"] if r["batch_size"] == size]
        height = 0.8 / len(series)
        for k, (label, res) in enumerate(series):
            rows = {r["model"]: r for r in res["rows"] if r["batch_size"] == size}
            ref = rows["schnet"]["train_mol_per_s"]
            ys = [i + (k - (len(series) - 1) / 2) * height for i in range(len(models))]
            ax.barh(ys, [rows[m]["train_mol_per_s"] / ref if m in rows else 0 for m in models],
                    height=height, color=f"C{k}",
                    label=(f"GPU ({res['machine']['cuda']})" if label == "GPU" else
                           f"CPU ({res['machine'].get('torch_threads')} threads)"))
        ax.set_yticks(range(len(models)), models)
        ax.axvline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("train step throughput / SchNet's")
        ax.legend(fontsize=7)
        ax.set_title(f"speed, batch {size}", fontsize=9)
    if accuracy is not None:
        ax = next(ax_iter)
        for k, res in enumerate(accuracy["results"]):
            models = list(res["test_mae"])
            base = res["test_mae"][models[0]]
            ax.bar([m + f"\n{res['target']}" for m in models],
                   [res["test_mae"][m] / base for m in models], color=f"C{k}")
        ax.set_ylabel("test MAE relative to AtomCloudNet")
        ax.set_title(f"equal budget ({accuracy['args']['time_budget']:g} min)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    if curve is not None:
        ax = next(ax_iter)
        sizes = [r["train_size"] for r in curve["rows"]]
        for key, label in (("cm", "CM kernel"), ("slatm", "SLATM kernel"),
                           ("acn_3A", "original ACN")):
            ax.loglog(sizes, [r["published"][key] for r in curve["rows"]], "o--", label=label)
        for model in curve["rows"][0]["runs"]:
            ax.loglog(sizes, [r["runs"][model]["test_mae_kcal_mol"] for r in curve["rows"]],
                      "s-", label=f"{model} (this work, CPU)")
        ax.set_xlabel("training molecules")
        ax.set_ylabel("U_atom test MAE (kcal/mol)")
        ax.set_title("QM9 learning curve", fontsize=9)
        ax.legend(fontsize=7)
    if scaling is not None:
        ax = next(ax_iter)
        for result, label in ((scaling, "freed memory reused"),
                              (scaling_system, "glibc malloc defaults")):
            if result is None:
                continue
            rows = result["rows"]
            ax.semilogx([r["atoms"] for r in rows],
                        [1e6 * r["conv_fwd_bwd_s"] / max(r["edges"], 1) for r in rows],
                        "o-", label=f"conv, {label}")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("atoms (liquid-water density)")
        ax.set_ylabel("microseconds per edge (fwd+bwd)")
        ax.set_title("CPU scaling (flat = linear)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
