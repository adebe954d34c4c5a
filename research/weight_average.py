"""One model from several checkpoints of one training lineage (a run and its
warm restarts): the average of their weights, chosen on the validation
molecules alone (a greedy "model soup", Wortsman et al., ICML 2022: members
in order of validation error, each kept if the average with it has a lower
validation error), beside the uniform average of all and each checkpoint.
Only the chosen average is tested.

    python research/weight_average.py runs/wide runs/wide_warm1 runs/wide_warm2 \\
        --subset data/qm9_subset.pt --out research/results/weight_average_n10000/wide
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ensemble import ENSEMBLE_SHARED, average_state_dicts, require_same  # noqa: E402
from finished_runs import (parse_run_folder_args, relocated, reproduces,  # noqa: E402
                           run_folder_parser, write_results)
from fit_diagnostic import display_unit  # noqa: E402

from acn_pyg.inference.checkpoint import state_dict_of  # noqa: E402
from acn_pyg.train import (MODEL_FIELDS, load_best_model, load_run, pick_device,  # noqa: E402
                           predict, prepare, run_config)


def main(argv=None) -> int:
    args = parse_run_folder_args(run_folder_parser(
        __doc__, "finished run folders of one model (metrics.json and best.pt)"), argv)
    from torch_geometric.loader import DataLoader

    metrics = [load_run(r) for r in args.runs]
    configs = [run_config(m) for m in metrics]
    # The model must be the same (torch.compile only changes how it runs, and
    # the denoising head is not part of the model).
    try:
        require_same(args.runs, configs, ENSEMBLE_SHARED + ("model",) + MODEL_FIELDS,
                     "their weights cannot be averaged")
    except ValueError as err:
        raise SystemExit(str(err)) from None
    cfg = relocated(configs[0], args.root, args.subset)
    prep = prepare(cfg)
    dev = pick_device(args.device)
    loaders = {s: DataLoader(prep.dataset[prep.split[s]], batch_size=128) for s in ("val", "test")}
    model = load_best_model(args.runs[0], cfg, prep, dev)
    states = [state_dict_of(torch.load(os.path.join(r, "best.pt"), map_location=dev,
                                       weights_only=True)) for r in args.runs]
    scale, unit = display_unit(prep.unit)

    def mae(state, split: str) -> float:
        model.load_state_dict(state)
        pred, true = predict(model, loaders[split], prep.t_index, dev)
        return float((pred - true).abs().mean())

    val = [mae(s, "val") for s in states]
    order = sorted(range(len(states)), key=val.__getitem__)
    soup, soup_val, tried = [order[0]], val[order[0]], []
    for k in order[1:]:
        candidate = mae(average_state_dicts([states[i] for i in soup + [k]]), "val")
        tried.append({"members": [args.runs[i] for i in soup + [k]], "val_mae": candidate,
                      "kept": candidate < soup_val})
        if candidate < soup_val:
            soup, soup_val = soup + [k], candidate
    uniform_val = mae(average_state_dicts(states), "val") if len(states) > 1 else val[0]
    soup_test = mae(average_state_dicts([states[i] for i in soup]), "test")
    if len(soup) == 1:  # the soup is one checkpoint: it must give its run's test MAE
        reported = metrics[soup[0]]["test_mae"]
        if not reproduces(soup_test, reported):
            raise SystemExit(f"{args.runs[soup[0]]} gives test MAE {soup_test:.6g}, its run "
                             f"reported {reported:.6g}: the checkpoint does not fit this code")

    lines = [f"QM9 {prep.name} MAE ({unit}), {prep.split['val'].numel():,} validation and "
             f"{prep.split['test'].numel():,} test molecules: weight averages of one lineage", "",
             "| weights | validation | test | |", "| --- | --- | --- | --- |"]
    for r, m, v in zip(args.runs, metrics, val):
        lines.append(f"| {r} | {v * scale:.3f} | {m['test_mae'] * scale:.3f} | its run's test |")
    for t in tried:
        lines.append(f"| average of {len(t['members'])}: {', '.join(t['members'])} | "
                     f"{t['val_mae'] * scale:.3f} | | {'kept' if t['kept'] else 'not kept'} |")
    lines.append(f"| uniform average of all {len(states)} | {uniform_val * scale:.3f} | | |")
    lines.append(f"| **chosen on validation**: {', '.join(args.runs[i] for i in soup)} | "
                 f"{soup_val * scale:.3f} | **{soup_test * scale:.3f}** | tested |")
    write_results(args.out, "\n".join(lines) + "\n", {
        "args": vars(args), "unit": prep.unit, "scale_to_display": scale, "display_unit": unit,
        "member_val_mae": dict(zip(args.runs, val)), "tried": tried,
        "uniform_val_mae": uniform_val, "chosen": [args.runs[i] for i in soup],
        "chosen_val_mae": soup_val, "chosen_test_mae": soup_test})
    return 0


if __name__ == "__main__":
    sys.exit(main())
