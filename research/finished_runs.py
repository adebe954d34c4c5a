"""Helpers of the research scripts that read finished runs (folders with a
``metrics.json`` and a ``best.pt`` of :func:`acn_pyg.train.run`): whether a
checkpoint still gives its run's result, its data looked for elsewhere, the
flags that rebuild its model, and the command line and output of a script
that reads run folders."""
import argparse
import json
import math
import os
import sys
from dataclasses import asdict
from typing import Dict, List, Optional

import torch
from e3nn import o3

from acn_pyg.train import MODEL_FIELDS, Config

# The benchmarks' helpers (machine description, real QM9 batches) serve the
# research scripts too.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
from common import machine, qm9_batch  # noqa: E402

__all__ = ["REPRODUCE_RTOL", "reproduces", "relocated", "model_flags", "run_folder_parser",
           "parse_run_folder_args", "write_results", "machine", "qm9_batch"]

#: Relative tolerance within which a finished run's checkpoint, evaluated
#: again, must give the test MAE the run reported (:func:`reproduces`).
#: Checkpoints saved on GPUs and CPUs and evaluated on a CPU with other batch
#: sizes differ by at most 2.3e-6; a checkpoint that no longer fits the code
#: differs by orders of magnitude more.
REPRODUCE_RTOL = 1e-4


def reproduces(mae: float, reported: float) -> bool:
    """Whether a test MAE computed again from a run's checkpoint is the one
    the run reported, within :data:`REPRODUCE_RTOL`."""
    return math.isclose(mae, reported, rel_tol=REPRODUCE_RTOL, abs_tol=1e-9)


def relocated(cfg: Config, root: Optional[str] = None, subset: Optional[str] = None) -> Config:
    """:obj:`cfg` with its data looked for elsewhere (a finished run read on
    another machine): the QM9 folder :obj:`root` (default: the run's own)
    and the subset file :obj:`subset`, or, when neither is given, :obj:`cfg`
    unchanged."""
    if root is None and subset is None:
        return cfg
    return Config(**{**asdict(cfg), "root": root or cfg.root, "subset": subset})


def model_flags(cfg: Config) -> List[str]:
    """The flags that build :obj:`cfg`'s AtomCloudNet again (the fields of
    :data:`~acn_pyg.train.MODEL_FIELDS`), e.g. to warm-start a run from
    another run's checkpoint with ``--init-from`` (``run_flags.py`` prints
    them for a finished run)."""
    if cfg.model != "acn":
        raise ValueError(f"model_flags: the run trained {cfg.model!r}, not 'acn', whose "
                         "flags these are")
    flags: List[str] = []
    for field in MODEL_FIELDS:
        value = getattr(cfg, field)
        flag = "--" + field.replace("_", "-")
        if field == "many_body":
            flags += [flag] if value else []
        elif field in ("weight_norm", "element_dependent", "product_basis", "input_linear"):
            flags += [flag] if value else []
        elif field == "scalar_activation":
            flags += [] if value else ["--no-scalar-activation"]
        elif field == "hidden_irreps" and value is not None:
            flags += [flag, str(o3.Irreps(value))]  # no spaces: one word in a shell
        elif value is not None:
            flags += [flag, str(value)]
    return flags


def run_folder_parser(doc: str, runs_help: str, cache: bool = False) -> argparse.ArgumentParser:
    """The command line of a script that reads finished run folders: the
    folders, --device, --root, --subset, --threads, --out and, with
    :obj:`cache`, --cache / --no-cache (the prediction cache of
    :func:`ensemble.ensemble_test`)."""
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help=runs_help)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--root", default=None, help="QM9 folder, if not the runs' own")
    p.add_argument("--subset", default=None, help="QM9 subset file, if not the runs' own")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--out", default=None, help="output stem for .json and .md (default: none)")
    if cache:
        p.add_argument("--cache", default=os.path.join("runs", "prediction_cache"),
                       help="folder of cached member predictions, reused for the same "
                            "checkpoint, molecules and code (default: runs/prediction_cache)")
        p.add_argument("--no-cache", action="store_true",
                       help="compute every member's predictions, store none")
    return p


def parse_run_folder_args(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parses :obj:`argv` and sets the torch CPU threads (--threads > 0)."""
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return args


def write_results(out: Optional[str], text: str, payload: Dict[str, object]) -> None:
    """Prints :obj:`text` and, when :obj:`out` (an output stem) is given,
    writes it to ``out.md`` and :obj:`payload` with the machine's
    description to ``out.json``."""
    print(text)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out + ".json", "w") as f:
            json.dump({"machine": machine(), **payload}, f, indent=2)
        with open(out + ".md", "w") as f:
            f.write(text)
