"""Test MAE of an ensemble: the mean prediction of several finished runs
(``examples/qm9.py`` or ``learning_curve.py`` run folders with ``metrics.json``
and ``best.pt``) that share target, split and sizes, beside each member's own.

    python research/run_ensemble.py runs/a/acn_n1000 runs/b/acn_n1000 \\
        --out research/results/ensemble_n1000

With ``--select greedy`` the members are chosen among the runs given on the
validation molecules alone (greedy forward selection: add the run that most
lowers the validation MAE of the mean, until none does); the test MAE of all
runs' mean is reported beside it. Each member's validation and test
predictions are kept in ``--cache`` (for the same checkpoint bytes, molecules
and code only), so choosing again among many runs costs only the new ones.
The ensemble costs the chosen members' training compute together, their
warm-start ancestors included (each run once); the JSON lists it. An ancestor
whose run folder is gone (``runs/`` of an earlier machine) is counted from its
recorded copy with ``--records DIR ...`` (folders of run folders copied from
elsewhere, e.g. ``research/results``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ensemble import SELECTIONS, ensemble_test  # noqa: E402
from finished_runs import parse_run_folder_args, run_folder_parser, write_results  # noqa: E402

from acn_pyg.train import epochs_cell  # noqa: E402


def main(argv=None) -> int:
    p = run_folder_parser(__doc__, "run folders (metrics.json and best.pt)", cache=True)
    p.add_argument("--select", default="all", choices=SELECTIONS,
                   help="members: all runs, or greedy selection on validation (default: all)")
    p.add_argument("--records", nargs="+", default=None, metavar="DIR",
                   help="folders of recorded runs (kept checkpoints, run folders copied into "
                        "the results) where a warm start whose run folder is gone is looked up "
                        "by the path it was written to, so its compute counts (default: none)")
    args = parse_run_folder_args(p, argv)

    result = ensemble_test(args.runs, device=args.device, root=args.root, subset=args.subset,
                           select=args.select, records=args.records,
                           cache_dir=None if args.no_cache else args.cache)
    kcal = "test_mae_kcal_mol" in result
    unit = "kcal/mol" if kcal else result["unit"]
    suffix = "_kcal_mol" if kcal else ""
    compute = result["compute"]
    selected = set(result["selected"])
    lines = [f"QM9 {result['target']} MAE ({unit}): {result['val_size']:,} validation, "
             f"{result['test_size']:,} test molecules; members "
             + ("chosen greedily on validation (order)" if args.select == "greedy"
                else "all runs given"), "",
             "| run | started from | init seed | batch | epochs | minutes | device | chosen "
             "| validation | test |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = {run: i + 1 for i, run in enumerate(result["greedy_order"])}
    for c, val, test in zip(compute, result["member_val_mae" + suffix],
                            result["member_test_mae" + suffix]):
        chosen = str(order[c["run"]]) if c["run"] in selected and args.select == "greedy" \
            else ("yes" if c["run"] in selected else "")
        lines.append(f"| {c['run']} | {c['init_from'] or 'scratch'} | {c['init_seed']} | "
                     f"{c['batch_size']} | {epochs_cell(c)} | {c['wall_time_s'] / 60:.1f} | "
                     f"{c['device']} | {chosen} | {val:.3f} | {test:.3f} |")
    n = len(result["selected"])
    total = {"epochs": result["total_epochs"], "epochs_trained": result["total_epochs_trained"]}
    lines.append(f"| **mean prediction of the {n} chosen** (compute with ancestors, each run "
                 f"once) | | | | {epochs_cell(total)} | "
                 f"{result['total_wall_time_s'] / 60:.1f} | | | {result['val_mae' + suffix]:.3f} | "
                 f"**{result['test_mae' + suffix]:.3f}** |")
    if args.select != "all":
        every = (result["val_mae_all" + suffix], result["test_mae_all" + suffix])
        lines.append(f"| mean prediction of all {len(args.runs)} | | | | | | | | "
                     f"{every[0]:.3f} | {every[1]:.3f} |")
    by_device = ", ".join(f"{dev} {t / 60:.1f}" for dev, t in
                          result["total_wall_time_s_by_device"].items())
    lines.append(f"\nMinutes of the chosen members' runs, ancestors included, by device: "
                 f"{by_device} (runs that shared a device each count their own time).")
    standing_in = sorted({(a["run"], a["record_of"]) for c in compute if c["run"] in selected
                          for a in c["ancestors"] if a.get("record_of")})
    if standing_in:
        lines.append("Warm-start sources counted from their records (the run folder is gone): "
                     + ", ".join(f"{old} as {rec}" for rec, old in standing_in) + ".")
    if result["ancestors_not_found"]:
        lines.append("Not counted (warm-start sources whose run folders are not here): "
                     + ", ".join(result["ancestors_not_found"]) + ".")
    if any(result["cached"]):
        lines.append(f"Predictions of {sum(result['cached'])} of the {len(args.runs)} runs taken "
                     f"from the cache ({args.cache}).")
    write_results(args.out, "\n".join(lines) + "\n", {"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
