"""The configuration of a training run: one :class:`Config` holds everything
a run depends on, and is saved with its checkpoints and metrics."""
import math
import os
from dataclasses import dataclass
from typing import Optional

#: Targets that grow with the molecule: summed over atoms, with an element baseline.
EXTENSIVE_TARGETS = frozenset(("alpha", "r2", "zpve", "U0", "U", "H", "G", "cv", "U0_atom",
                               "U_atom", "H_atom", "G_atom"))
MODELS = ("acn", "schnet", "dimenet++", "dimenet")
#: The fields a resumed run may change: where things are and how fast they
#: run, and how long to go on. Every other field defines the run and must be
#: the checkpoint's.
RESUMABLE_FIELDS = frozenset(("resume", "epochs", "time_budget", "out", "root", "data_source",
                              "on_disk", "subset", "device", "threads", "workers", "compile",
                              "reuse_memory", "plot", "init_from"))
#: Values of :obj:`Config.output`: ``auto`` picks the target's head.
OUTPUT_CHOICES = ("auto", "scalar", "dipole")
#: The training program's factor on the gradient that a polarizability
#: tensor's traceless part sends into the layers shared with its trace
#: (:class:`~acn_pyg.nn.SymmetricTensorHead`'s :obj:`anisotropic_gradient`):
#: with it the trace is learned about as well as :obj:`alpha` alone.
ANISOTROPIC_GRADIENT = 0.1
#: Peak learning rate per model when none is given: 1e-3 for every model
#: (the baselines' published value).
DEFAULT_LR = {"acn": 1e-3, "schnet": 1e-3, "dimenet++": 1e-3, "dimenet": 1e-3}


@dataclass
class Config:
    """Everything a run depends on; saved with every checkpoint and result.

    The command-line flags of :mod:`acn_pyg.train.cli` have the same names
    (``--hidden-irreps`` for :obj:`hidden_irreps`) and say what each field
    means and its unit."""
    data: str = "qm9"
    target: str = "U0"
    energy_key: str = "energy"
    forces_key: str = "forces"
    property_key: Optional[str] = None
    energy_weight: float = 1.0
    forces_weight: float = 100.0
    reference_energies: Optional[str] = None
    model: str = "acn"
    train_size: int = 1000
    val_size: int = 500
    test_size: int = 1000
    epochs: int = 1000
    time_budget: float = 3.0
    batch_size: int = 32
    lr: Optional[float] = None
    weight_decay: float = 0.0
    ema: float = 0.99
    warmup: float = 0.0
    denoise_weight: float = 0.0
    denoise_sigma: float = 0.1
    device: str = "auto"
    seed: int = 0
    init_seed: Optional[int] = None
    hidden_channels: int = 64
    hidden_irreps: Optional[str] = None
    num_layers: int = 3
    cutoff: float = 5.0
    lmax: int = 2
    product_channels: int = 0
    product_correlation: int = 2
    element_dependent: bool = False
    product_basis: bool = False
    input_linear: bool = False
    self_interaction_rank: int = 0
    scalar_activation: bool = True
    radial_gain: float = 10.0
    embedding_std: float = 1.0
    residual: bool = True
    weight_norm: bool = False
    output: str = "auto"
    anisotropic_gradient: Optional[float] = None
    many_body: bool = False
    root: str = "data/QM9"
    data_source: Optional[str] = None
    on_disk: bool = False
    subset: Optional[str] = None
    out: str = "runs/qm9"
    resume: bool = False
    init_from: Optional[str] = None
    threads: int = 0
    workers: int = 0
    compile: bool = False
    reuse_memory: bool = True
    plot: bool = True

    @property
    def on_qm9(self) -> bool:
        """Whether the run trains on QM9 (else on a structure file)."""
        return self.data.lower() == "qm9"

    @property
    def peak_lr(self) -> float:
        """:obj:`lr`, or the model's default (:data:`DEFAULT_LR`)."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.model]

    @property
    def initial_seed(self) -> int:
        """The seed of the initialisation and the shuffling: :obj:`init_seed`,
        or :obj:`seed` when it is :obj:`None`."""
        return self.seed if self.init_seed is None else self.init_seed

    @property
    def budget_s(self) -> float:
        """The time budget in seconds (:obj:`math.inf` for none)."""
        return self.time_budget * 60.0 if self.time_budget is not None else math.inf


def check_config(cfg: Config) -> None:
    """Raises a :class:`ValueError` naming the flag of the first field of
    :obj:`cfg` that no run can use, before any work is done."""
    if cfg.model not in MODELS:
        raise ValueError(f"--model must be one of {MODELS} (got {cfg.model!r})")
    for name in ("train_size", "val_size", "test_size", "epochs", "batch_size"):
        _require(name, getattr(cfg, name), lambda v: isinstance(v, int) and v >= 1,
                 "a whole number >= 1")
    _require("threads", cfg.threads, lambda v: isinstance(v, int) and v >= 0,
             "a whole number >= 0")
    _require("workers", cfg.workers, lambda v: isinstance(v, int) and v >= 0,
             "a number of processes >= 0")
    _require("time_budget", cfg.time_budget, lambda v: v is None or v > 0,
             "a time in minutes > 0 (inf for none)")
    _require("lr", cfg.lr, lambda v: v is None or 0 < v < math.inf, "finite and > 0")
    _require("weight_decay", cfg.weight_decay, lambda v: 0 <= v < math.inf, ">= 0")
    _require("ema", cfg.ema, lambda v: 0 <= v < 1, "a decay per step in [0, 1)")
    _require("warmup", cfg.warmup, lambda v: 0 <= v < 1,
             "a fraction of the schedule in [0, 1)")
    _require("denoise_weight", cfg.denoise_weight, lambda v: 0 <= v < math.inf, ">= 0")
    if cfg.on_disk and cfg.on_qm9:
        raise ValueError("--on-disk keeps a structure file's frames on disk; QM9 is held in "
                         "memory (about 100 MB): leave it out, or give --data FILE")
    if not cfg.on_qm9:
        if not os.path.isfile(cfg.data):
            raise ValueError(f"--data must be 'qm9' or a structure file that ASE reads "
                             f"(no file at {cfg.data!r})")
        for name in ("energy_weight", "forces_weight"):
            _require(name, getattr(cfg, name), lambda v: 0 <= v < math.inf, ">= 0")
        if cfg.energy_weight == 0 and cfg.forces_weight == 0:
            raise ValueError("--energy-weight and --forces-weight are both 0: nothing to learn")
        if cfg.compile and cfg.forces_weight > 0:
            raise ValueError("--compile does not support training on forces (a double "
                             "backward) yet; train without it")
    _require("output", cfg.output, lambda v: v in OUTPUT_CHOICES,
             f"one of {', '.join(OUTPUT_CHOICES)}")
    structured = (cfg.target in ("charges", "polarizability") if cfg.on_qm9
                  else cfg.target in ("charges", "dipole", "polarizability"))
    if cfg.on_qm9 and cfg.target == "dipole":
        raise ValueError("--target dipole is a structure file's dipole vector; QM9 gives "
                         "the dipole's magnitude: --target mu")
    if structured and cfg.model != "acn":
        raise ValueError(f"--target {cfg.target} needs an output head of AtomCloudNet: "
                         f"--model acn (got {cfg.model})")
    if cfg.output == "dipole" and not (cfg.on_qm9 and str(cfg.target) in ("mu", "0")
                                       and cfg.model == "acn"):
        raise ValueError("--output dipole is AtomCloudNet's dipole-vector head for QM9's "
                         "--target mu")
    if cfg.output == "scalar" and structured:
        raise ValueError(f"--target {cfg.target} is not one number a molecule: leave --output "
                         "at auto")
    if cfg.anisotropic_gradient is not None:
        if cfg.target != "polarizability":
            raise ValueError(f"--anisotropic-gradient is the polarizability tensor's; "
                             f"--target {cfg.target} has no traceless part")
        _require("anisotropic_gradient", cfg.anisotropic_gradient, lambda v: 0 <= v <= 1,
                 "a factor in [0, 1]")
    if cfg.denoise_weight > 0:
        _require("denoise_sigma", cfg.denoise_sigma, lambda v: 0 < v < math.inf,
                 "the noise's standard deviation in Angstrom, > 0")
        if cfg.model != "acn":
            raise ValueError(f"--denoise-weight reads AtomCloudNet's atom features; "
                             f"not available for --model {cfg.model}")


def _require(name: str, value, ok, what: str) -> None:
    # NaN fails every comparison, so it is refused with the rest.
    if not ok(value):
        raise ValueError(f"--{name.replace('_', '-')} must be {what} (got {value!r})")
