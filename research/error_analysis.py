"""Where a model's test error comes from: the distribution of the absolute
errors of finished runs on their test molecules (quantiles, how much of the
MAE the worst 1% / 5% of molecules carry) and the MAE by molecule size and
composition (and, with the full data set's SMILES, whether the molecule is
charge-separated), with the worst molecules named by their QM9 index; with
several runs, the same for their mean prediction.

    python research/error_analysis.py runs/gpu/acn_eq_wide_n10000_b128/acn_n10000 \\
        --subset data/qm9_subset.pt --out research/results/error_analysis_n10000

Predictions come from ``ensemble.ensemble_test`` (each checkpoint
checked to reproduce its run's test MAE) and share its prediction cache.
"""
import os
import re
import sys
from typing import Dict, List

import torch
from torch import Tensor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ensemble import ensemble_test  # noqa: E402
from finished_runs import parse_run_folder_args, run_folder_parser, write_results  # noqa: E402
from fit_diagnostic import display_unit  # noqa: E402

#: Elements whose presence splits the molecules into groups (QM9: H C N O F).
ELEMENTS = {6: "C", 7: "N", 8: "O", 9: "F"}
QUANTILES = (0.5, 0.9, 0.99, 0.999)
#: A bracket atom with a formal charge in a SMILES string ("[NH+]", "[O-]").
CHARGED_ATOM = re.compile(r"\[[^\]]*[+-][^\]]*\]")


def charge_separated(smiles: str) -> bool:
    """Whether a SMILES string has atoms with formal charges (in QM9, which
    is neutral, a zwitterion: e.g. ``NC=[NH+]CCCC([O-])=O``)."""
    return bool(CHARGED_ATOM.search(smiles))


def error_statistics(err: Tensor) -> Dict[str, float]:
    """Statistics of absolute errors :obj:`err` (shape :math:`[N]`): MAE,
    RMSE, quantiles, maximum, the share of the summed error carried by the
    worst 1% and 5% of molecules, and the MAE without the worst 1%."""
    err = err.double().abs()
    ordered = err.sort(descending=True).values
    n = err.numel()
    top = {f: max(1, round(f * n)) for f in (0.01, 0.05)}
    out = {"n": n, "mae": float(err.mean()), "rmse": float(err.pow(2).mean().sqrt()),
           "max": float(ordered[0])}
    out.update({f"q{q:g}": float(torch.quantile(err, q)) for q in QUANTILES})
    out.update({f"share_worst_{round(100 * f)}pct": float(ordered[:k].sum() / err.sum())
                for f, k in top.items()})
    out["mae_without_worst_1pct"] = float(ordered[top[0.01]:].mean()) if n > top[0.01] else 0.0
    return out


def group_mae(err: Tensor, groups: List[str]) -> Dict[str, Dict[str, float]]:
    """MAE and count of :obj:`err` per group label (one per molecule)."""
    out: Dict[str, Dict[str, float]] = {}
    for label in sorted(set(groups), key=lambda g: (len(g), g)):
        mask = torch.tensor([g == label for g in groups])
        out[label] = {"n": int(mask.sum()), "mae": float(err.abs()[mask].mean())}
    return out


def main(argv=None) -> int:
    p = run_folder_parser(__doc__, "finished run folders (metrics.json and best.pt)",
                          cache=True)
    p.add_argument("--worst", type=int, default=10, help="worst molecules listed (default 10)")
    args = parse_run_folder_args(p, argv)

    result = ensemble_test(args.runs, device=args.device, root=args.root, subset=args.subset,
                           cache_dir=None if args.no_cache else args.cache,
                           keep_predictions=True)
    prep = result["prepared"]
    test = prep.dataset[prep.split["test"]]
    molecules = [test[i] for i in range(len(test))]
    heavy = [f"{int((m.z > 1).sum())}" for m in molecules]
    present = [set(m.z.tolist()) for m in molecules]
    composition = ["".join(ELEMENTS[e] for e in sorted(ELEMENTS) if e in z) or "H only"
                   for z in present]
    qm9_index = [int(m.idx) for m in molecules]
    # SMILES come with the full data set (acn_pyg.datasets.QM9), not with a
    # subset file: pass --root without --subset to have them.
    smiles = [getattr(m, "smiles", None) for m in molecules]
    charged = None
    if all(isinstance(sm, str) for sm in smiles):
        charged = ["charge-separated" if charge_separated(sm) else "neutral" for sm in smiles]
        train = prep.dataset[prep.split["train"]]
        charged_in_training = sum(charge_separated(train[i].smiles) for i in range(len(train)))
    true = result["true"]["test"]
    if true.numel() != len(molecules):
        raise RuntimeError("the test molecules and the predictions differ in number")

    scale, unit = display_unit(result["unit"])
    preds = result["predictions"]["test"]
    models = {run: preds[k] for k, run in enumerate(args.runs)}
    if len(args.runs) > 1:
        models[f"mean of the {len(args.runs)}"] = preds.mean(dim=0)
    analysis = {}
    for name, pred in models.items():
        err = (pred - true) * scale
        worst = err.abs().sort(descending=True).indices[:args.worst]
        analysis[name] = {
            "statistics": error_statistics(err),
            "by_heavy_atoms": group_mae(err, heavy),
            "by_composition": group_mae(err, composition),
            "worst": [{"qm9_index": qm9_index[i], "heavy_atoms": int(heavy[i]),
                       "composition": composition[i], "smiles": smiles[i],
                       "error": float(err[i]), "true": float(true[i] * scale)}
                      for i in worst.tolist()],
        }
        if charged is not None:
            analysis[name]["by_charge_separation"] = group_mae(err, charged)

    names = list(analysis)
    stats = ["mae", "rmse", "q0.5", "q0.9", "q0.99", "q0.999", "max", "share_worst_1pct",
             "share_worst_5pct", "mae_without_worst_1pct"]
    lines = [f"QM9 {result['target']} on {true.numel():,} test molecules: absolute errors "
             f"({unit}; shares are of the summed error)", "",
             "| model | " + " | ".join(stats) + " |", "| --- " * (len(stats) + 1) + "|"]
    for name in names:
        s = analysis[name]["statistics"]
        lines.append(f"| {name} | " + " | ".join(f"{s[k]:.3f}" for k in stats) + " |")
    for key, title in (("by_heavy_atoms", "heavy atoms"), ("by_composition", "heavy elements"),
                       ("by_charge_separation", "formal charges in the SMILES")):
        if key not in analysis[names[0]]:
            continue
        groups = list(analysis[names[0]][key])
        lines += ["", f"MAE ({unit}) by {title}:", "",
                  f"| {title} | molecules | " + " | ".join(names) + " |",
                  "| --- " * (len(names) + 2) + "|"]
        for g in groups:
            lines.append(f"| {g} | {analysis[names[0]][key][g]['n']} | "
                         + " | ".join(f"{analysis[n][key][g]['mae']:.3f}" for n in names) + " |")
    for name in names:
        lines += ["", f"Worst {args.worst} molecules of {name}:", "",
                  "| QM9 index | SMILES | heavy atoms | elements | error | true value |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {w['qm9_index']} | {w['smiles'] or ''} | {w['heavy_atoms']} | "
                  f"{w['composition']} | {w['error']:+.2f} | {w['true']:.1f} |"
                  for w in analysis[name]["worst"]]
    if charged is not None:
        lines += ["", f"Charge-separated molecules (formal charges in the SMILES): "
                  f"{charged.count('charge-separated')} of the {len(charged):,} test molecules, "
                  f"{charged_in_training} of the {len(prep.split['train']):,} training molecules."]
    write_results(args.out, "\n".join(lines) + "\n", {
        "args": vars(args), "unit": unit, "test_size": true.numel(),
        "charge_separated_in_training": charged_in_training if charged is not None else None,
        "analysis": analysis})
    return 0


if __name__ == "__main__":
    sys.exit(main())
