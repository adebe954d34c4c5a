"""``acn-pyg predict``, ``acn-pyg test`` and ``acn-pyg export``: the
command-line side of :mod:`acn_pyg.inference`."""
import json
import os
import sys
from typing import List, Tuple


def add_commands(commands) -> None:
    """Adds the predict, test and export sub-commands to an
    :obj:`argparse` sub-parser set."""
    p = commands.add_parser(
        "predict", help="predict structures with trained models",
        description="Predict the trained property of every structure in FILEs (any format ASE "
                    "reads: xyz, extended XYZ, sdf, pdb, ASE db, ...) with one checkpoint, or "
                    "with several as an ensemble (mean and standard deviation across them).")
    p.add_argument("paths", nargs="+", metavar="CHECKPOINT... FILE...",
                   help="checkpoints (.pt files or run folders) first, then structure files")
    p.add_argument("--out", default=None,
                   help="output file: .csv, .json or .xyz (extended XYZ); default: CSV on "
                        "standard output")
    p.add_argument("--forces", action="store_true",
                   help="also the forces (energy models only; to .json or .xyz)")
    p.add_argument("--index", default=":",
                   help="which structures of each file, as ase.io.read takes it (default: all)")
    p.add_argument("--format", default=None, help="the files' format, if ASE cannot tell")
    p.add_argument("--batch-size", type=int, default=64, help="(default: 64)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="(default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    t = commands.add_parser(
        "test", help="recompute a run's test error from its checkpoint",
        description="Rebuild the run's held-out test structures from the configuration in "
                    "CHECKPOINT and compute its test errors as the training program did.")
    t.add_argument("checkpoint", help="a best.pt of acn-pyg train, or its run folder")
    t.add_argument("--root", default=None, help="QM9 folder, if not where the run had it")
    t.add_argument("--data-source", default=None, help="folder of qm9pack-format CSVs")
    t.add_argument("--subset", default=None, help="a QM9 subset file holding the test split")
    t.add_argument("--data", default=None,
                   help="the structure file, if not where the run had it")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    e = commands.add_parser(
        "export", help="export a model that runs without acn_pyg",
        description="Write CHECKPOINT's model as a torch.export program (energy and forces "
                    "of one structure from atomic numbers, positions and its edges) that "
                    "torch.export.load runs without acn_pyg's classes.")
    e.add_argument("checkpoint", help="a checkpoint or run folder")
    e.add_argument("out", help="output file (.pt2)")
    e.add_argument("--no-check", action="store_true",
                   help="skip the comparison of the exported program with the eager model")


def split_paths(paths: List[str]) -> Tuple[List[str], List[str]]:
    """Checkpoints (``.pt`` files and run folders) and structure files, in
    that order on the command line."""
    checkpoints = []
    for k, path in enumerate(paths):
        if os.path.isdir(path) or path.endswith((".pt", ".pth")):
            checkpoints.append(path)
        else:
            rest = paths[k:]
            break
    else:
        rest = []
    stray = [p for p in rest if p.endswith((".pt", ".pth")) or os.path.isdir(p)]
    if not checkpoints:
        raise ValueError("predict: the first argument must be a checkpoint (.pt file or run "
                         f"folder); got {paths[0]!r}")
    if not rest:
        raise ValueError("predict: no structure file after the checkpoints")
    if stray:
        raise ValueError(f"predict: checkpoints come before the structure files ({stray[0]!r} "
                         "comes after one)")
    return checkpoints, rest


def _device(name: str):
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def predict_command(args) -> int:
    from acn_pyg.inference.checkpoint import load_trained
    from acn_pyg.inference.predict import (check_output, predict_structures, read_structures,
                                           write_predictions)

    checkpoints, files = split_paths(args.paths)
    device = _device(args.device)
    models = [load_trained(c, device) for c in checkpoints]
    check_output(args.out, models[0], args.forces)  # before the work
    structures = read_structures(files, args.index, args.format)
    pred = predict_structures(models, structures, forces=args.forces,
                              batch_size=args.batch_size, device=device,
                              progress=not args.quiet)
    write_predictions(args.out, models, structures, pred)
    if args.out is not None:
        print(f"{len(structures)} structures, {models[0].target} in {models[0].unit}"
              f"{f' (mean of {len(models)} models)' if len(models) > 1 else ''} -> {args.out}",
              file=sys.stderr)
    return 0


def test_command(args) -> int:
    from acn_pyg.inference.checkpoint import load_trained, resolve
    from acn_pyg.inference.evaluation import test_checkpoint

    device = _device(args.device)
    path = resolve(args.checkpoint)
    trained = load_trained(path, device)
    result = test_checkpoint(trained, device, root=args.root, data_source=args.data_source,
                             subset=args.subset, data=args.data)
    metrics_path = os.path.join(os.path.dirname(os.path.abspath(path)), "metrics.json")
    if os.path.isfile(metrics_path):
        with open(metrics_path) as f:
            reported = json.load(f)
        result["reported"] = {k: reported[k] for k in result
                              if k.startswith("test_") and k != "test_size" and k in reported}
    print(json.dumps(result, indent=2))
    return 0


def export_command(args) -> int:
    from acn_pyg.inference.export import export_model
    info = export_model(args.checkpoint, args.out, check=not args.no_check)
    print(json.dumps(info, indent=2))
    return 0


COMMANDS = {"predict": predict_command, "test": test_command, "export": export_command}
