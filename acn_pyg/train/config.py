"""The configuration of a training run: one :class:`Config` holds everything
a run depends on, and is saved with its checkpoints and metrics."""
import math
from dataclasses import dataclass
from typing import Optional

#: Targets that grow with the molecule: summed over atoms, with an element baseline.
EXTENSIVE_TARGETS = frozenset(("alpha", "r2", "zpve", "U0", "U", "H", "G", "cv", "U0_atom",
                               "U_atom", "H_atom", "G_atom"))
MODELS = ("acn", "schnet", "dimenet++", "dimenet")
#: Peak learning rate per model when none is given: the baselines keep
#: their published 1e-3.
DEFAULT_LR = {"acn": 3e-3, "schnet": 1e-3, "dimenet++": 1e-3, "dimenet": 1e-3}


@dataclass
class Config:
    """Everything a run depends on; saved with every checkpoint and result.

    The command-line flags of :mod:`acn_pyg.train.cli` have the same names
    (``--hidden-irreps`` for :obj:`hidden_irreps`) and say what each field
    means and its unit."""
    target: str = "U0"
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
    radial_gain: float = 1.0
    many_body: bool = False
    root: str = "data/QM9"
    data_source: Optional[str] = None
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
    def peak_lr(self) -> float:
        """:obj:`lr`, or the model's default (:data:`DEFAULT_LR`)."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.model]

    @property
    def budget_s(self) -> float:
        """The time budget in seconds (:obj:`math.inf` for none)."""
        return self.time_budget * 60.0 if self.time_budget is not None else math.inf


def check_config(cfg: Config) -> None:
    """Raises a :class:`ValueError` naming the flag of the first field of
    :obj:`cfg` that no run can use."""
    if cfg.model not in MODELS:
        raise ValueError(f"--model must be one of {MODELS} (got {cfg.model!r})")
    if not 0.0 <= cfg.warmup < 1.0:
        raise ValueError(f"--warmup is a fraction of the schedule in [0, 1) (got {cfg.warmup})")
    if cfg.workers < 0:
        raise ValueError(f"--workers is a number of processes, >= 0 (got {cfg.workers})")
    if cfg.denoise_weight < 0:
        raise ValueError(f"--denoise-weight must be >= 0 (got {cfg.denoise_weight})")
    if cfg.denoise_weight > 0:
        if not cfg.denoise_sigma > 0:
            raise ValueError(f"--denoise-sigma is the noise's standard deviation in Angstrom, "
                             f"> 0 (got {cfg.denoise_sigma})")
        if cfg.model != "acn":
            raise ValueError(f"--denoise-weight reads AtomCloudNet's atom features; "
                             f"not available for --model {cfg.model}")
