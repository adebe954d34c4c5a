"""Paired comparisons of training options: each init seed trained with and
without an option, at equal epochs (the learning-rate schedule follows the
epochs, not the clock), so that the runs of one seed see the same
initialisation and the same batches in the same order, and the option's
effect is read seed by seed (``denoise.py``).

A run folder that already holds a finished run of the same config is read,
not trained again; one that holds another run is refused. Runs whose
folders are gone (another machine) can be taken from an earlier result of
the same comparison with ``--previous``, beside new runs of the same seeds.
"""
import dataclasses
import json
import math
import os
import sys
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from finished_runs import write_results  # noqa: E402

from acn_pyg.train import (Config, add_config_arguments, config_from_args,  # noqa: E402
                           load_run, run, run_config)
from acn_pyg.units import EV_TO_KCALMOL  # noqa: E402

#: Fields that only say where or how fast a run ran: a finished run is
#: reused whatever they were.
PLACE_FIELDS = ("root", "subset", "data_source", "out", "threads", "device", "plot")


def same_run(cfg: Config, metrics: dict) -> bool:
    """Whether a finished run's config (fields recorded before they existed
    at their defaults, as :func:`~acn_pyg.train.run_config` reads them)
    is :obj:`cfg`, wherever each ran. Without denoising (``denoise_weight``
    0 in both) the noise's ``denoise_sigma`` does nothing, and a run recorded
    with another (the default before version 0.2.12) is the same run."""
    recorded, wanted = (dataclasses.asdict(c) for c in (run_config(metrics), cfg))
    denoising = recorded["denoise_weight"] or wanted["denoise_weight"]
    idle = set() if denoising else {"denoise_sigma"}
    return all(recorded[k] == v for k, v in wanted.items()
               if k not in PLACE_FIELDS and k not in idle)


#: Config fields a comparison sets per run, or that a paired run must not
#: take from the command line (no resuming, warm starts or compilation).
OWN_FIELDS = ("model", "init_seed", "out", "denoise_weight", "denoise_sigma", "resume",
              "init_from", "device", "compile")


def base_config(args) -> Config:
    """The config every run of a comparison shares, from the arguments that
    :func:`add_arguments` defines: on the CPU, without plots."""
    return config_from_args(args, device="cpu", plot=False)


def add_arguments(p, runs: str) -> None:
    """The arguments of a paired comparison: every flag of ``examples/qm9.py``
    (:func:`~acn_pyg.train.add_config_arguments`) but those of
    :data:`OWN_FIELDS`, with this comparison's defaults (U_atom, 100 training
    molecules, 500 validation, 10,000 test, 270 epochs and a 100-minute time
    budget, well above the epochs' time, so that the learning-rate schedule
    follows the epochs; one thread), then the init seeds and the folders."""
    add_config_arguments(p, Config(target="U_atom", train_size=100, val_size=500,
                                   test_size=10000, epochs=270, time_budget=100.0, threads=1),
                         skip=OWN_FIELDS)
    p.add_argument("--seeds", default="0,1,2,3", help="init seeds (same split)")
    p.add_argument("--runs", default=runs, help="folder of the run folders")
    p.add_argument("--out", default=None, help="output stem for .json and .md")
    p.add_argument("--previous", default=None,
                   help="earlier results of this comparison (.json, comma-separated) whose "
                        "runs are taken as recorded, for runs whose folders are gone: a run "
                        "(seed and variant) a record holds is not read from its folder or "
                        "trained; their settings must be these")


#: Arguments in which an earlier result may differ from the comparison that
#: takes its runs (:func:`previous_rows`): which seeds, variants and folders,
#: and, as for a run folder's reuse (:data:`PLACE_FIELDS`), where or how fast
#: the runs ran.
RECORD_FREE = PLACE_FIELDS + ("seeds", "runs", "previous", "weights", "sigmas")


def previous_rows(args, key: str) -> List[Dict]:
    """The runs recorded in the results ``args.previous`` (comma-separated
    JSON files written by this comparison), as rows of this one: each marked
    with its ``record``, its change to be recomputed by :func:`add_changes`.
    A run is a seed and its value of :obj:`key` (the variant); the comparison
    takes the runs a record holds from it (:func:`recorded`), and the rest of
    its seeds' runs from their folders. A run in several records (a control
    shared by two comparisons) is taken from the first. Refused if a record's
    arguments differ from :obj:`args` in anything but :data:`RECORD_FREE`,
    or if two records hold a run with different rows."""
    if not args.previous:
        return []
    mine = {k: v for k, v in vars(args).items() if k not in RECORD_FREE}
    taken = {}
    rows = []
    for path in args.previous.split(","):
        with open(path) as f:
            record = json.load(f)
        theirs = {k: v for k, v in record["args"].items() if k not in RECORD_FREE}
        differ = sorted(k for k in set(mine) | set(theirs)
                        if mine.get(k, "(unset)") != theirs.get(k, "(unset)"))
        if differ:
            raise SystemExit(f"{path} was run with other settings: " + ", ".join(
                f"{k} = {theirs.get(k, '(unset)')!r}, here {mine.get(k, '(unset)')!r}"
                for k in differ))
        for r in record["runs"]:
            run_id = (r["seed"], r[key])
            row = {k: v for k, v in r.items() if k not in ("change_kcal_mol", "record")}
            if run_id in taken:
                first, row_there = taken[run_id]
                if row != row_there:
                    raise SystemExit(f"seed {r['seed']}, {key} {r[key]!r} is recorded "
                                     f"differently in {first} and in {path}")
                continue  # one run (a shared control) in both: taken from the first
            taken[run_id] = (path, row)
            rows.append({**row, "record": path})
    return rows


def recorded(rows: List[Dict], key: str, seed: int, value) -> bool:
    """Whether :obj:`rows` (from :func:`previous_rows`) hold the run of
    :obj:`seed` whose :obj:`key` is :obj:`value`."""
    return any(r["seed"] == seed and r[key] == value for r in rows)


def in_order(rows: List[Dict], key: str, values: Sequence) -> List[Dict]:
    """:obj:`rows` by seed, and within a seed by the place of their
    :obj:`key` in :obj:`values` (recorded and new runs interleaved)."""
    return sorted(rows, key=lambda r: (r["seed"], list(values).index(r[key])))


def finished_run(cfg: Config, epochs: int) -> Dict[str, object]:
    """The metrics of the run :obj:`cfg` in :obj:`cfg.out`: read if it is
    there and finished with this config, else trained; refused if the
    folder holds another run or the time budget cut it short."""
    try:
        metrics = load_run(cfg.out)
    except FileNotFoundError:
        metrics = None
    if metrics is not None and not same_run(cfg, metrics):
        raise SystemExit(f"{cfg.out} holds another run (its config differs): move it away")
    if metrics is None:
        metrics = run(cfg)
    if metrics["epochs"] < epochs:
        raise SystemExit(f"{cfg.out} ran {metrics['epochs']} of {epochs} epochs: the "
                         "time budget bound, so its schedule did not follow the epochs")
    return metrics


def run_row(seed: int, cfg: Config, metrics: Dict[str, object], **variant) -> Dict:
    """One run's line of a comparison (errors in kcal/mol); :obj:`variant`
    names what sets it apart (``weight=1.0``)."""
    return {"seed": seed, **variant, "run": cfg.out,
            "test_mae_kcal_mol": metrics["test_mae"] * EV_TO_KCALMOL,
            "best_val_mae_kcal_mol": metrics["best_val_mae"] * EV_TO_KCALMOL,
            "train_mae_kcal_mol": metrics["train_mae"] * EV_TO_KCALMOL,
            "epochs": metrics["epochs"], "minutes": metrics["wall_time_s"] / 60}


def add_changes(rows: List[Dict], key: str, control) -> None:
    """Adds to each row its test MAE less that of its seed's control run
    (the row whose :obj:`key` is :obj:`control`)."""
    base = {r["seed"]: r for r in rows if r[key] == control}
    missing = sorted({r["seed"] for r in rows} - set(base))
    if missing:
        raise ValueError(f"no control run ({key} = {control!r}) for seeds {missing}")
    for r in rows:
        r["change_kcal_mol"] = r["test_mae_kcal_mol"] - base[r["seed"]]["test_mae_kcal_mol"]


def p_cell(p) -> str:
    """A p-value for a table: two decimals, or one significant digit below
    0.01 (0.004 would read 0.00)."""
    if p is None:
        return ""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1g}"


def paired_p_value(changes: Sequence[float]):
    """Two-sided p-value of a paired t-test that the mean change is zero
    (one change per seed, :math:`t = \\bar d / (s_d / \\sqrt{n})` with
    :math:`n - 1` degrees of freedom); :obj:`None` for fewer than two seeds
    or changes that do not vary (the control's own)."""
    n = len(changes)
    if n < 2:
        return None
    mean = sum(changes) / n
    var = sum((d - mean) ** 2 for d in changes) / (n - 1)
    if var <= 0.0:
        return None
    from scipy.stats import t as student_t  # e3nn's dependency
    tstat = mean / math.sqrt(var / n)
    return float(2.0 * student_t.sf(abs(tstat), n - 1))


def summary_table(rows: List[Dict], key: str, values: Sequence) -> Tuple[List[str], List[Dict]]:
    """Per value of :obj:`key`: seeds, mean test MAE, mean change against the
    control, on how many seeds it was worse, and the paired t-test's
    two-sided p-value (:func:`paired_p_value`); markdown lines and records."""
    lines = [f"| {key} | seeds | mean test | mean change | worse on | p (paired t) |",
             "| --- | --- | --- | --- | --- | --- |"]
    summary = []
    for value in values:
        mine = [r for r in rows if r[key] == value]
        mean, change = mean_test_and_change(mine)
        worse = sum(r["change_kcal_mol"] > 0 for r in mine)
        p = paired_p_value([r["change_kcal_mol"] for r in mine])
        summary.append({key: value, "seeds": len(mine), "mean_test_mae_kcal_mol": mean,
                        "mean_change_kcal_mol": change, "worse_on": worse, "p_paired_t": p})
        lines.append(f"| {value_name(value)} | {len(mine)} | {mean:.3f} | {change:+.3f} | "
                     f"{worse} of {len(mine)} | {p_cell(p)} |")
    return lines + same_seeds_table(rows, key, values, summary), summary


def mean_test_and_change(rows: List[Dict]) -> Tuple[float, float]:
    """The mean test MAE of :obj:`rows` and their mean change against the
    control (kcal/mol)."""
    return (sum(r["test_mae_kcal_mol"] for r in rows) / len(rows),
            sum(r["change_kcal_mol"] for r in rows) / len(rows))


def value_name(value) -> str:
    """A compared value as the tables show it: a float without trailing zeros."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def same_seeds_table(rows: List[Dict], key: str, values: Sequence,
                     summary: List[Dict]) -> List[str]:
    """Where the values of :obj:`key` were run on different seeds, the mean
    test errors of :func:`summary_table`'s first table average different
    seeds and do not compare. So: the means over the seeds they all have, as
    markdown lines (none if they all have the same seeds, or share none).
    Adds ``mean_test_mae_same_seeds_kcal_mol`` and ``same_seeds`` to each
    :obj:`summary` record."""
    seeds = [{r["seed"] for r in rows if r[key] == value} for value in values]
    common = sorted(set.intersection(*seeds))
    if not common or all(len(s) == len(common) for s in seeds):
        return []
    lines = ["", f"The variants were not all run on the same seeds. Over the seeds they all have "
             f"({', '.join(map(str, common))}):", "",
             f"| {key} | mean test | mean change |", "| --- | --- | --- |"]
    for value, record in zip(values, summary):
        mean, change = mean_test_and_change(
            [r for r in rows if r[key] == value and r["seed"] in common])
        record.update(same_seeds=common, mean_test_mae_same_seeds_kcal_mol=mean)
        lines.append(f"| {value_name(value)} | {mean:.3f} | {change:+.3f} |")
    return lines


def run_line(r: Dict, variant: str, extra: str) -> str:
    """A run's row of a comparison table: seed, :obj:`variant`, test MAE,
    change, best validation and training errors, :obj:`extra`, minutes."""
    return (f"| {r['seed']} | {variant} | {r['test_mae_kcal_mol']:.3f} | "
            f"{r['change_kcal_mol']:+.3f} | {r['best_val_mae_kcal_mol']:.3f} | "
            f"{r['train_mae_kcal_mol']:.3f} | {extra} | {r['minutes']:.1f} |")


def write_comparison(args, lines: List[str], rows: List[Dict], key: str,
                     values: Sequence) -> None:
    """Writes :obj:`lines` (the title and the runs' table) with the summary
    per value of :obj:`key` below, to ``args.out`` (.md and .json)."""
    table, summary = summary_table(rows, key, values)
    records = {}
    for r in rows:
        if "record" in r:
            records.setdefault(r["record"], {}).setdefault(r["seed"], []).append(
                f"`{value_name(r[key])}`")
    notes = [f"As recorded in `{path}`, not read from run folders: " + "; ".join(
        f"seed {seed} ({', '.join(names)})" for seed, names in sorted(seeds.items())) + "."
        for path, seeds in records.items()]
    lines = lines + [line for note in notes for line in ("", note)]
    write_results(args.out, "\n".join(lines + [""] + table) + "\n",
                  {"args": vars(args), "runs": rows, "summary": summary})
