"""Command-line flags of :class:`acn_pyg.train.Config`, shared by
``examples/qm9.py`` and the benchmarks: one flag per field, with the same
name (``--hidden-irreps`` for ``hidden_irreps``), help text and default."""
import argparse
import dataclasses
import functools
from typing import Callable, Iterable, Optional

from acn_pyg.datasets.qm9 import DESCRIPTIONS, TARGETS, UNITS, target_index
from acn_pyg.train.config import ANISOTROPIC_GRADIENT, MODELS, Config

#: The fields that configure AtomCloudNet only; the baselines keep their own
#: published settings and ignore them (the denoising head reads AtomCloudNet's
#: atom features).
ACN_FIELDS = ("hidden_channels", "hidden_irreps", "num_layers", "cutoff", "lmax",
              "product_channels", "product_correlation", "element_dependent",
              "product_basis", "input_linear", "self_interaction_rank", "scalar_activation",
              "radial_gain", "embedding_std", "residual", "weight_norm", "many_body",
              "compile", "denoise_weight", "denoise_sigma", "output", "anisotropic_gradient")
#: The fields that decide AtomCloudNet's parameters: a checkpoint loads into
#: a model built with the same values (a warm start with --init-from).
MODEL_FIELDS = ("hidden_channels", "hidden_irreps", "num_layers", "cutoff", "lmax",
                "product_channels", "product_correlation", "element_dependent",
                "product_basis", "input_linear", "self_interaction_rank", "scalar_activation",
                "radial_gain", "weight_norm", "many_body", "output")


def add_config_arguments(parser: argparse.ArgumentParser, defaults: Optional[Config] = None,
                         skip: Iterable[str] = ()) -> None:
    """Adds a flag for every field of :class:`~acn_pyg.train.Config` but
    those in :obj:`skip` (and :obj:`plot`, which a caller offers as
    ``--no-plot`` if it plots), defaulting to :obj:`defaults`."""
    d = defaults if defaults is not None else Config()
    skip = set(skip) | {"plot"}
    unknown = skip - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ValueError(f"'skip' names no Config field: {sorted(unknown)}")

    for title, flags in _GROUPS:
        flags(functools.partial(_add, parser.add_argument_group(title), skip), d)


def _add(group, skip, field: str, flag: Optional[str] = None, **kwargs) -> None:
    if field not in skip:
        group.add_argument(flag or "--" + field.replace("_", "-"), dest=field, **kwargs)


def _data_flags(add: Callable[..., None], d: Config) -> None:
    """Flags of the data, the QM9 target or the file's keys, the split and the data files."""
    t = target_index(d.target)
    add("data", default=d.data,
        help="'qm9', or a structure file that ASE reads (extended XYZ, ASE database, ...) "
             f"with energies and forces (default: {d.data})")
    add("energy_key", default=d.energy_key,
        help=f"the file's energy key (info or calculator result; eV) (default: {d.energy_key})")
    add("forces_key", default=d.forces_key,
        help=f"the file's forces key (per-atom array or calculator result; eV/A) "
             f"(default: {d.forces_key})")
    add("property_key", default=d.property_key,
        help="structure files with --target charges, dipole or polarizability: the file's key "
             "of that property (per-atom array, info or calculator result; default: the "
             "target's name)")
    add("reference_energies", default=d.reference_energies,
        help="structure files: energy of each element's isolated atom, e.g. "
             "'H:-13.6,C:-1029.9' (eV), taken as the model's atom reference; by default they "
             "are fitted by least squares on the training structures")
    add("target", default=d.target,
        help=f"QM9 target by name or index 0-18: {', '.join(TARGETS)}; or 'charges' (Mulliken "
             f"charges per atom, e) or 'polarizability' (the 3x3 tensor, a0^3); for a "
             f"structure file, 'charges', 'dipole' or 'polarizability' learn that property "
             f"through AtomCloudNet's head instead of energies and forces "
             f"(default: {d.target}, {DESCRIPTIONS[t]} in {UNITS[t]})")
    add("train_size", type=int, default=d.train_size,
        help=f"training molecules (default: {d.train_size})")
    add("val_size", type=int, default=d.val_size,
        help=f"validation molecules, for checkpoint selection (default: {d.val_size})")
    add("test_size", type=int, default=d.test_size,
        help=f"held-out test molecules (default: {d.test_size})")
    add("seed", type=int, default=d.seed,
        help=f"seed of the split and the initialisation (default: {d.seed})")
    add("root", default=d.root, help=f"dataset folder (default: {d.root})")
    add("data_source", default=d.data_source,
        help="folder of qm9pack-format CSVs (default: the installed qm9pack)")
    add("on_disk", action="store_true", default=d.on_disk,
        help="structure files: keep the structures in an on-disk store of memory-mapped "
             "arrays, read lazily, instead of in memory: for files larger than memory "
             "(default: in memory)")
    add("subset", default=d.subset,
        help="a QM9 subset file (acn_pyg.datasets.save_qm9_subset, benchmarks/qm9_subset.py) "
             "to use instead of ROOT, where qm9pack is missing; the split must lie in it "
             "(default: none)")


def _optim_flags(add: Callable[..., None], d: Config) -> None:
    """Flags of optimisation, schedule and loss terms."""
    add("energy_weight", type=float, default=d.energy_weight,
        help=f"structure files: weight of the energy term, the squared error per atom in units "
             f"of the model's scale (as MACE) (default: {d.energy_weight:g}; 0: forces only)")
    add("forces_weight", type=float, default=d.forces_weight,
        help=f"structure files: weight of the forces term, the squared error per component "
             f"(as MACE) (default: {d.forces_weight:g}; 0: energies only)")
    add("epochs", type=int, default=d.epochs,
        help=f"maximum number of epochs (default: {d.epochs})")
    add("time_budget", type=float, default=d.time_budget,
        help=f"training wall-clock budget in minutes; the learning rate decays over it "
             f"(default: {d.time_budget})")
    add("batch_size", type=int, default=d.batch_size,
        help=f"molecules per batch (default: {d.batch_size})")
    add("lr", type=float, default=d.lr,
        help="peak learning rate of Adam, cosine-decayed (default: 1e-3)" if d.lr is None
        else f"peak learning rate (default: {d.lr})")
    add("weight_decay", type=float, default=d.weight_decay,
        help=f"decoupled weight decay (AdamW) when > 0; 0 is plain Adam "
             f"(default: {d.weight_decay})")
    add("warmup", type=float, default=d.warmup,
        help=f"linear learning-rate warm-up over this fraction of the schedule "
             f"(default: {d.warmup}; 0: none)")
    add("ema", type=float, default=d.ema,
        help=f"decay per step of the weight average used for validation, test and "
             f"checkpoints; 0 disables it (default: {d.ema})")
    add("denoise_weight", type=float, default=d.denoise_weight,
        help="weight of an auxiliary denoising loss: each step also runs the model on "
             "positions displaced by Gaussian noise (--denoise-sigma), and a vector head on "
             "its atom features predicts the displacement (mean squared error in units of "
             "the noise); the energy is trained on the true positions only; acn only; "
             "about 2x the cost of a step "
             f"(default: {d.denoise_weight:g}; 0: off)")
    add("denoise_sigma", type=float, default=d.denoise_sigma,
        help=f"standard deviation of that noise in Angstrom; without --denoise-weight it "
             f"does nothing (default: {d.denoise_sigma:g})")
    add("init_seed", type=int, default=d.init_seed,
        help="seed of the initialisation and shuffling only, to vary them on the same split "
             "(default: the split's seed)")


def _model_flags(add: Callable[..., None], d: Config) -> None:
    """Flags of the model and, for AtomCloudNet, its architecture."""
    add("model", default=d.model, choices=MODELS,
        help="acn (AtomCloudNet), or a PyG baseline with its published QM9 settings "
             f"(default: {d.model})")
    add("hidden_channels", type=int, default=d.hidden_channels,
        help=f"AtomCloudNet scalar channels (default: {d.hidden_channels})")
    add("hidden_irreps", default=d.hidden_irreps,
        help="AtomCloudNet irreps between layers, e.g. '64x0e+16x1o+16x2e' "
             f"(default: {d.hidden_irreps or 'scalars only'})")
    add("num_layers", type=int, default=d.num_layers,
        help=f"AtomCloudConv layers (default: {d.num_layers})")
    add("cutoff", type=float, default=d.cutoff,
        help=f"AtomCloudNet cutoff in Angstrom (default: {d.cutoff})")
    add("lmax", type=int, default=d.lmax,
        help=f"largest spherical-harmonic degree (default: {d.lmax})")
    add("product_channels", type=int, default=d.product_channels,
        help="channels per irrep of each layer's product of its cloud with itself (body "
             f"order three, as in MACE; 0: off) (default: {d.product_channels})")
    add("product_correlation", type=int, choices=(2, 3), default=d.product_correlation,
        help="the most cloud factors in a product: 2 (pairs of neighbours) or 3 (triples, "
             f"body order four, as MACE's correlation 3) (default: {d.product_correlation})")
    add("element_dependent", action=argparse.BooleanOptionalAction,
        default=d.element_dependent,
        help="weigh every layer's product paths and self-interaction by the atom's element "
             f"embedding, as MACE's element-dependent weights (default: {d.element_dependent})")
    add("product_basis", action=argparse.BooleanOptionalAction, default=d.product_basis,
        help="every layer's new features a linear map of its products contracted per "
             "channel (the cloud one of their terms), as MACE's product basis; needs "
             f"--product-channels (default: {d.product_basis})")
    add("input_linear", action=argparse.BooleanOptionalAction, default=d.input_linear,
        help="mix every layer's input channels by a linear map before its cloud, as MACE's "
             f"linear_up (default: {d.input_linear})")
    add("self_interaction_rank", type=int, default=d.self_interaction_rank,
        help="if positive, every layer's self-interaction matrix depends on the element "
             "embedding with this rank, as MACE's element-dependent skip connection; needs "
             f"--element-dependent (default: {d.self_interaction_rank})")
    add("scalar_activation", action=argparse.BooleanOptionalAction,
        default=d.scalar_activation,
        help="SiLU on every layer's scalar outputs; without it the scalars stay polynomials "
             f"of the clouds up to the atom MLP, as in MACE (default: {d.scalar_activation})")
    add("radial_gain", type=float, default=d.radial_gain,
        help=f"constant factor on the radial MLPs' outputs "
             f"(default: {d.radial_gain:g})")
    add("embedding_std", type=float, default=d.embedding_std,
        help="std of the element embedding's initial entries; 0.45 with --radial-gain 1.5 "
             f"starts a product-basis model at MACE's scales (default: {d.embedding_std:g})")
    add("residual", action=argparse.BooleanOptionalAction, default=d.residual,
        help="add every layer's output to its input; --no-residual replaces it, as MACE "
             f"(default: {d.residual})")
    add("weight_norm", action=argparse.BooleanOptionalAction, default=d.weight_norm,
        help="weight-normalised weight matrices (AtomCloudNet's weight_norm, the class's "
             "default, for loops without a schedule); the program's default is plain "
             f"weights (default: {d.weight_norm})")
    add("output", default=d.output, choices=("auto", "scalar", "dipole"),
        help="AtomCloudNet's output head: auto takes QM9's mu through a dipole vector (its "
             "norm is learned), charges per atom and the polarizability tensor through their "
             f"heads, and a scalar otherwise; scalar learns mu as a number (default: {d.output})")
    add("anisotropic_gradient", type=float, default=d.anisotropic_gradient,
        help="--target polarizability: the factor on the gradient that the tensor's "
             "traceless part passes into the layers shared with its trace (1: all of it; "
             "lower keeps the trace closer to alpha learned alone, at a cost to the "
             "anisotropy; the prediction does not depend on it) "
             f"(default: {ANISOTROPIC_GRADIENT})")
    add("many_body", action="store_true",
        help="concatenate the Coulomb/London/ATM many-body atom features")


def _run_flags(add: Callable[..., None], d: Config) -> None:
    """Flags of device, speed, output folder, resume and warm start."""
    add("device", default=d.device, choices=("auto", "cpu", "cuda"),
        help=f"where to train; auto takes CUDA when available (default: {d.device})")
    add("threads", type=int, default=d.threads,
        help=f"CPU threads for torch; 0 keeps torch's default (default: {d.threads})")
    add("workers", type=int, default=d.workers,
        help="data-loader worker processes that collate batches while the model steps, for a "
             f"GPU, whose steps wait on the host; 0 collates in this process "
             f"(default: {d.workers})")
    add("reuse_memory", "--no-reuse-memory", action="store_false",
        help="on CPU, keep glibc's default of giving large freed "
             "blocks back to the system (by default they are kept for reuse, which makes "
             "steps faster: see acn_pyg.utils.reuse_freed_memory)")
    add("compile", action="store_true",
        help="run the training step through torch.compile (dynamic shapes; the first steps "
             "compile for a minute or so)")
    add("out", default=d.out, help=f"output folder (default: {d.out})")
    add("resume", action="store_true",
        help="continue from the output folder's last.pt (same flags as the interrupted run)")
    add("init_from", default=d.init_from,
        help="warm start: the weights of an earlier run's best.pt or last.pt (same model "
             "flags), then a fresh optimizer and learning-rate schedule; --resume of this "
             "run takes precedence once it has a last.pt (default: none)")


_GROUPS = (("data", _data_flags), ("training", _optim_flags), ("model", _model_flags),
           ("run", _run_flags))


def config_from_args(args: argparse.Namespace, **overrides) -> Config:
    """The :class:`~acn_pyg.train.Config` of parsed flags: every field with
    a flag of its name, :obj:`plot` from ``--no-plot`` if there is one, then
    :obj:`overrides`; the rest keep their defaults."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
              if hasattr(args, f.name)}
    if hasattr(args, "no_plot"):
        values["plot"] = not args.no_plot
    values.update(overrides)
    return Config(**values)


def add_train_command(commands) -> None:
    """Adds ``train`` (every :class:`~acn_pyg.train.Config` flag and
    ``--no-plot``) to an :obj:`argparse` sub-parser set."""
    train = commands.add_parser(
        "train", help="train on QM9 or on a structure file",
        description="Train AtomCloudNet (or PyG's SchNet / DimeNet++ by the same loop) on a "
                    "QM9 target or on the energies and forces of a structure file, test the "
                    "best checkpoint, and write metrics.json, plots and checkpoints to --out.")
    add_config_arguments(train)
    train.add_argument("--no-plot", action="store_true", help="skip the plots")


def train_command(args: argparse.Namespace) -> int:
    """Runs ``acn-pyg train`` on parsed flags and prints the test errors."""
    import os

    from acn_pyg.train import distributed
    from acn_pyg.train.experiment import run
    from acn_pyg.train.report import summary

    cfg = config_from_args(args)
    metrics = run(cfg)
    if not distributed.is_main():  # under torchrun, rank 0 reports
        return 0
    print("\n".join(summary(metrics)))
    print(f"metrics: {os.path.join(cfg.out, 'metrics.json')}")
    return 0


def main(argv=None) -> int:
    """``acn-pyg train``, raising its errors (:func:`acn_pyg.cli.main` is
    the command with every sub-command)."""
    parser = argparse.ArgumentParser(
        prog="acn-pyg", description="AtomCloudNet for PyTorch Geometric")
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_command(commands)
    return train_command(parser.parse_args(argv))
