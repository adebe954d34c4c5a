"""Underfitting or overfitting? The best checkpoint of finished runs on their
own training molecules, beside their validation and test errors.

Runs since version 0.2.4 record ``train_mae`` themselves; this recomputes it
for any finished run folder (``metrics.json`` + ``best.pt``), e.g. those
trained on a GPU before, on this machine's CPU::

    python research/fit_diagnostic.py runs/gpu/b128/acn_n10000 \\
        --out research/results/fit_diagnostic_n10000

A training error close to the validation error says the model underfits
(more capacity or less regularisation may help); a large gap says it
overfits (more data or regularisation may help).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from finished_runs import machine, reproduces  # noqa: E402

from acn_pyg.train import (epochs_cell, load_best_model, load_run, predict,  # noqa: E402
                           prepare, run_config)
from acn_pyg.units import EV_TO_KCALMOL  # noqa: E402


def diagnose(run_dir: str, device: str = "cpu", batch_size: int = 256,
             splits=("train", "val", "test")) -> dict:
    metrics = load_run(run_dir)
    cfg = run_config(metrics)
    cfg.device = device
    prep = prepare(cfg)
    model = load_best_model(run_dir, cfg, prep, device)
    from torch_geometric.loader import DataLoader
    out = {"run": run_dir, "unit": prep.unit, "train_size": int(prep.split["train"].numel()),
           "epochs": epochs_cell(metrics), "test_mae": metrics["test_mae"],
           "train_mae": metrics.get("train_mae"), "best_val_mae": metrics.get("best_val_mae")}
    for key in splits:
        pred, true = predict(model, DataLoader(prep.dataset[prep.split[key]],
                                               batch_size=batch_size), prep.t_index, device)
        out[f"{key}_mae_recomputed"] = float((pred - true).abs().mean())
    # The recomputed test error must be the run's own: same data, same weights.
    if "test" in splits:
        out["test_matches_run"] = reproduces(out["test_mae_recomputed"], metrics["test_mae"])
    if "train" in splits and "val" in splits:
        out["val_over_train"] = out["val_mae_recomputed"] / out["train_mae_recomputed"]
    return out


def display_unit(unit: str):
    """(factor, unit) in which tables show errors: energies in kcal/mol."""
    return (EV_TO_KCALMOL, "kcal/mol") if unit == "eV" else (1.0, unit)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="finished run folders (metrics.json + best.pt)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--out", default=None, help="output stem for .json and .md (default: none)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = [diagnose(r, args.device) for r in args.runs]
    lines = ["| run | N train | epochs | train MAE | val MAE | test MAE | val / train | unit |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        scale, unit = display_unit(r["unit"])
        lines.append(f"| {r['run']} | {r['train_size']:,} | {r['epochs']} | "
                     f"{r['train_mae_recomputed'] * scale:.3f} | "
                     f"{r['val_mae_recomputed'] * scale:.3f} | "
                     f"{r['test_mae_recomputed'] * scale:.3f} | {r['val_over_train']:.2f} | "
                     f"{unit} |")
        if not r["test_matches_run"]:
            lines.append(f"| (recomputed test MAE differs from the run's {r['test_mae']:.6g}) "
                         "| | | | | | | |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out + ".json", "w") as f:
            json.dump({"machine": machine(), "rows": rows}, f, indent=2)
        with open(args.out + ".md", "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
