"""How much each model learns per training example, per epoch and per CPU
minute: AtomCloudNet (default and equivariant), MACE and PyG's SchNet trained
by one plain loop (benchmarks/common.py's plain_loop: Adam at the model's own
learning rate, batch 32, L1 on the target standardised over a per-element
linear baseline, ReduceLROnPlateau, no weight average), on the same QM9 split.
After every epoch the run records its clock (training and validation) and the
test MAE of its best validation epoch so far: equal-time and equal-epoch
curves.

MACE pins e3nn 0.4.4, so it runs in its own virtual environment
(benchmarks/mace_env.sh) as a subprocess; every model runs as one.

    bash benchmarks/mace_env.sh
    python benchmarks/per_example.py --sizes 1000,100 --minutes 20
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from multiprocessing.pool import ThreadPool
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

#: name -> (learning rate, AMSGrad, label). Each model at its own learning
#: rate: AtomCloudNet's and SchNet's best of lr_robustness.py's sweep (U0),
#: MACE's own default (mace-torch's run_train: 1e-2 with AMSGrad).
MODELS = {
    "acn": (3e-3, False, "AtomCloudNet()"),
    "acn-equivariant": (3e-3, False, "AtomCloudNet(64x0e+16x1o+16x2e)"),
    "mace": (1e-2, True, "MACE (64x0e, max_ell 3, correlation 3, 2 layers)"),
    "schnet": (1e-3, False, "SchNet (PyG defaults)"),
}
ELEMENTS = [1, 6, 7, 8, 9]
#: ScaleShiftMACE's settings of ``mace_run_train`` for a 64x0e model, the
#: ones a job may change (its "mace" dict) to change one of MACE's
#: ingredients; irreps as strings, interaction blocks by their names in
#: mace.modules.interaction_classes.
MACE_DEFAULTS = dict(num_bessel=8, max_ell=3,
                     interaction_cls="RealAgnosticResidualInteractionBlock",
                     interaction_cls_first="RealAgnosticInteractionBlock", num_interactions=2,
                     hidden_irreps="64x0e", MLP_irreps="16x0e", correlation=3,
                     radial_MLP=[64, 64, 64], use_agnostic_product=False,
                     use_last_readout_only=False, apply_cutoff=True)
MACE_OPTIONS = tuple(MACE_DEFAULTS)


def check_mace_options(options: dict) -> None:
    """Raises a :class:`ValueError` naming any key of :obj:`options` that is
    not one of :data:`MACE_OPTIONS`."""
    unknown = sorted(set(options) - set(MACE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown MACE option(s) {unknown}: choose from {list(MACE_OPTIONS)}")


def mace_model(prep, avg_num_neighbors: float, cutoff: float = 5.0,
               acn_layers: Optional[dict] = None, acn_parts=(), **options):
    """mace-torch's ScaleShiftMACE with the settings of ``mace_run_train``
    for a 64x0e model (max_ell 3, correlation 3, two interactions, the
    training set's atom references, mean and std), called as
    ``model(z, pos, batch)`` like the others; float32, on the graph of
    :func:`acn_pyg.graph.radius_graph`. :obj:`options` replace any of
    :data:`MACE_DEFAULTS` (e.g. ``correlation=2``, ``use_agnostic_product=True``
    for element-independent product weights, ``use_last_readout_only=True``
    for one readout after the last layer)."""
    import numpy as np
    import torch
    from e3nn import o3
    from mace import modules

    from acn_pyg.graph import radius_graph

    atomref = prep.atomref.view(-1).double() if prep.atomref is not None else None
    check_mace_options(options)
    settings = {**MACE_DEFAULTS, **options}
    for key in ("interaction_cls", "interaction_cls_first"):
        settings[key] = modules.interaction_classes[settings[key]]
    for key in ("hidden_irreps", "MLP_irreps"):
        settings[key] = o3.Irreps(settings[key])
    e0 = np.array([float(atomref[z]) if atomref is not None else 0.0 for z in ELEMENTS])
    mace = modules.ScaleShiftMACE(
        r_max=cutoff, num_polynomial_cutoff=5, num_elements=len(ELEMENTS), atomic_energies=e0,
        avg_num_neighbors=avg_num_neighbors, atomic_numbers=ELEMENTS,
        gate=torch.nn.functional.silu, radial_type="bessel",
        atomic_inter_scale=prep.std, atomic_inter_shift=prep.mean, **settings)
    index = torch.full((max(ELEMENTS) + 1,), -1, dtype=torch.long)
    index[ELEMENTS] = torch.arange(len(ELEMENTS))
    if acn_parts:
        acn_parts_in_mace(mace, settings, acn_parts)
    edges = (acn_layers_in_mace(mace, settings, avg_num_neighbors, cutoff, **acn_layers)
             if acn_layers is not None else None)

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mace = mace
            self.edges = edges

        def forward(self, z, pos, batch):
            num_graphs = int(batch.max()) + 1
            edge_index = radius_graph(pos, cutoff, batch)
            if self.edges is not None:
                self.edges.compute(pos, edge_index)
            ptr = torch.cat([batch.new_zeros(1),
                             torch.bincount(batch, minlength=num_graphs).cumsum(0)])
            data = {"positions": pos.clone(),
                    "node_attrs": torch.nn.functional.one_hot(index[z], len(ELEMENTS)).to(
                        pos.dtype),
                    "edge_index": edge_index,
                    "shifts": pos.new_zeros(edge_index.size(1), 3),
                    "unit_shifts": pos.new_zeros(edge_index.size(1), 3),
                    "cell": pos.new_zeros(num_graphs * 3, 3),
                    "batch": batch, "ptr": ptr}
            return self.mace(data, training=self.training, compute_force=False)["energy"]

    return Wrapped()


#: AtomCloudConv's arguments that :func:`acn_layers_in_mace` sets from MACE's
#: settings (the rest an "acn_layers" dict may set, and "residual").
ACN_LAYERS_FIXED = ("in_irreps", "out_irreps", "cutoff", "lmax", "num_basis",
                    "avg_num_neighbors", "max_num_neighbors", "attr_channels",
                    "self_interaction_rank")


def check_acn_layers(options: dict) -> None:
    """Raises a :class:`ValueError` naming any key of an "acn_layers" dict
    that :func:`acn_layers_in_mace` does not take."""
    import inspect

    from acn_pyg.nn import AtomCloudConv

    allowed = set(inspect.signature(AtomCloudConv).parameters) - set(ACN_LAYERS_FIXED)
    unknown = sorted(set(options) - allowed - {"residual"})
    if unknown:
        raise ValueError(f"unknown 'acn_layers' option(s) {unknown}: choose from "
                         f"{sorted(allowed | {'residual'})}")


def acn_layers_in_mace(mace, settings: dict, avg_num_neighbors: float, cutoff: float,
                       residual: bool = True, **conv_options):
    """Replaces every interaction and product block of a ScaleShiftMACE
    (:func:`mace_model`) by one :class:`~acn_pyg.nn.AtomCloudConv` from its
    hidden irreps to themselves (lmax MACE's ``max_ell``, its radial basis
    size and average number of neighbours; element-agnostic), so that one layer's form is
    compared inside MACE's embedding, readout and scale-shift. The layer's
    output replaces the features, or with :obj:`residual` (AtomCloudNet's
    form) is added to them. :obj:`conv_options` are AtomCloudConv's
    (default: ``product_channels=64, product_basis=True,
    weight_norm=False``). Returns the module that computes the edge features
    the layers share; call its ``compute(pos, edge_index)`` before the
    model."""
    import torch

    from acn_pyg.nn import AtomCloudConv
    from acn_pyg.nn.embedding import EdgeEmbedding

    hidden = str(settings["hidden_irreps"])
    check_acn_layers(conv_options)
    options = dict(product_channels=64, product_basis=True, weight_norm=False)
    options.update(conv_options)

    class Edges(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = EdgeEmbedding(cutoff, settings["max_ell"], settings["num_bessel"])
            self.features = None

        def compute(self, pos, edge_index):
            self.features = self.embedding(pos, edge_index)

    class Layer(torch.nn.Module):
        # Called as MACE's interaction block: returns the new features, no skip.
        def __init__(self, edges):
            super().__init__()
            self.conv = AtomCloudConv(hidden, hidden, cutoff=cutoff, lmax=settings["max_ell"],
                                      num_basis=settings["num_bessel"],
                                      avg_num_neighbors=avg_num_neighbors, **options)
            self.edges = [edges]  # shared, not a submodule of every layer

        def forward(self, node_attrs, node_feats, edge_attrs, edge_feats, edge_index,
                    **kwargs):
            out = self.conv.convolve(node_feats, edge_index, self.edges[0].features)
            return (out + node_feats if residual else out), None

    class Features(torch.nn.Module):
        # Called as MACE's product block: the layer's output as it is.
        def forward(self, node_feats, sc, node_attrs):
            return node_feats

    edges = Edges()
    mace.interactions = torch.nn.ModuleList(Layer(edges) for _ in mace.interactions)
    mace.products = torch.nn.ModuleList(Features() for _ in mace.products)
    return edges


#: The parts of MACE's layers that :func:`acn_parts_in_mace` can replace.
ACN_PARTS = ("radial", "radial_nobias", "product", "skip")


def check_acn_parts(parts) -> None:
    """Raises a :class:`ValueError` naming any entry of an "acn_parts" list
    that is not one of :data:`ACN_PARTS`."""
    unknown = sorted(set(parts) - set(ACN_PARTS))
    if unknown:
        raise ValueError(f"unknown 'acn_parts' {unknown}: choose from {list(ACN_PARTS)}")


def acn_parts_in_mace(mace, settings: dict, parts, radial_gain: float = 1.5) -> None:
    """Replaces parts of every layer of a ScaleShiftMACE (:func:`mace_model`)
    by AtomCloudNet's, one ingredient at a time: ``"radial"``, the radial MLP
    by :class:`~acn_pyg.nn.RadialMLP` (one hidden layer of MACE's
    ``radial_MLP[0]`` units, with biases, output times :obj:`radial_gain`);
    ``"product"``, the symmetric contraction by
    :class:`~acn_pyg.nn.conv.SymmetricProduct` (``contract=True``,
    element-agnostic, its own projection of the cloud first); ``"skip"``, the
    element-dependent skip connection by an
    :class:`~acn_pyg.nn.IrrepsLinear` of the features alone;
    ``"radial_nobias"``, as ``"radial"`` with the biases zero and frozen."""
    import torch
    from e3nn import o3

    from acn_pyg.nn import IrrepsLinear, RadialMLP
    from acn_pyg.nn.conv import SymmetricProduct

    check_acn_parts(parts)
    hidden = o3.Irreps(settings["hidden_irreps"])

    class Skip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = IrrepsLinear(str(hidden), hidden)

        def forward(self, x, attrs):
            return self.linear(x)

    class Contraction(torch.nn.Module):
        # MACE's layout [n, channels, sum of 2l+1] in, e3nn's to SymmetricProduct.
        def __init__(self, irreps):
            super().__init__()
            self.dims = [ir.dim for _, ir in irreps]
            self.product = SymmetricProduct(irreps, irreps[0].mul,
                                            filter_ir_out=[ir for _, ir in hidden],
                                            correlation=settings["correlation"], contract=True)

        def forward(self, x, attrs):
            n = x.size(0)
            return self.product(torch.cat([b.reshape(n, -1)
                                           for b in x.split(self.dims, dim=-1)], dim=-1))

    for interaction, product in zip(mace.interactions, mace.products):
        if "radial" in parts or "radial_nobias" in parts:
            interaction.conv_tp_weights = RadialMLP(
                settings["num_bessel"], settings["radial_MLP"][0],
                interaction.conv_tp.weight_numel, gain=radial_gain)
            if "radial_nobias" in parts:
                freeze_biases_at_zero(interaction.conv_tp_weights)
        if "skip" in parts and hasattr(interaction, "skip_tp"):
            interaction.skip_tp = Skip()
        if "product" in parts:
            product.symmetric_contractions = Contraction(o3.Irreps(interaction.irreps_out))


def job_config(job: dict):
    """The :class:`~acn_pyg.train.Config` of a job: its target, sizes and
    data, AtomCloudNet's default weight normalisation, and the job's
    optional ``"config"``, more Config fields of the AtomCloudNet (e.g.
    ``product_channels``) for a configuration not in :data:`MODELS`."""
    from acn_pyg.train import Config

    name = job["model"]
    fields = dict(target=job["target"], model="schnet" if name == "schnet" else "acn",
                  hidden_irreps="64x0e+16x1o+16x2e" if name == "acn-equivariant" else None,
                  train_size=job["size"], val_size=job["val_size"],
                  test_size=job["test_size"], root=job["root"],
                  weight_norm=True)  # AtomCloudNet's default
    fields.update(job.get("config", {}))
    return Config(**fields)


def fan_in_param_groups(model, lr: float) -> list:
    """Adam's parameter groups for e3nn's parametrisation of the weights:
    e3nn holds unit weights and multiplies by 1/sqrt(fan-in) in the forward
    pass, so under Adam (invariant to a gradient's scale) its step on a weight
    matrix is that of a weight holding the factor, at lr / sqrt(fan-in). Every
    :class:`torch.nn.Linear` weight and :class:`~acn_pyg.nn.IrrepsLinear`
    weight gets that learning rate; every other parameter (biases, the
    embedding, product path weights) :obj:`lr`."""
    import math

    import torch

    from acn_pyg.nn import IrrepsLinear, NormalizedLinear

    scales = {}
    for module in model.modules():
        if isinstance(module, NormalizedLinear) or getattr(module, "weight_norm", False):
            raise ValueError("'lr_scale': 'fan_in' needs plain weights (weight_norm=False)")
        if isinstance(module, torch.nn.Linear):
            scales[module.weight] = 1.0 / math.sqrt(module.in_features)
        elif isinstance(module, IrrepsLinear):
            for k, w in enumerate(module.weights):
                # the initial std of the rows, one value per matrix (rms)
                scales[w] = float(getattr(module, f"scale_{k}").pow(2).mean().sqrt())
    groups = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault(scales.get(p, 1.0), []).append(p)
    return [{"params": params, "lr": lr * s} for s, params in sorted(groups.items())]


def one_readout(model, hidden: int) -> None:
    """Replaces AtomCloudNet's readout (atom MLP, then a two-layer output MLP)
    by MACE's: one MLP of :obj:`hidden` SiLU units from the last layer's
    scalars to the atom's output."""
    import torch

    if model.many_body is not None or model.output_mlp[0].in_features != model.hidden_channels:
        raise ValueError("'readout_hidden' needs the AtomCloudNet without extra atom features")
    c = model.hidden_channels
    model.atom_mlp = torch.nn.Identity()
    model.output_mlp = torch.nn.Sequential(torch.nn.Linear(c, hidden), torch.nn.SiLU(),
                                           torch.nn.Linear(hidden, 1))


def layer_readouts(model) -> None:
    """Adds MACE's readouts of the earlier layers: a linear map (no bias, e3nn's
    initial scale 1/sqrt(fan-in)) from the scalars of every layer but the last
    to the atom's output, summed with the readout of the last layer."""
    import torch

    c, convs = model.hidden_channels, len(model.gates)
    if model.readout != "atom" and model.pooling != "add":
        raise ValueError("'layer_readouts' needs per-atom outputs summed (pooling='add')")
    scalars = []

    class Summed(torch.nn.Module):
        def __init__(self, last):
            super().__init__()
            self.last = last
            self.linears = torch.nn.ModuleList(
                torch.nn.Linear(c, 1, bias=False) for _ in range(convs - 1))
            for lin in self.linears:
                torch.nn.init.normal_(lin.weight, std=c ** -0.5)

        def forward(self, a):
            y = self.last(a)
            for lin, h in zip(self.linears, scalars):
                y = y + lin(h)
            scalars.clear()
            return y

    for gate in model.gates[:-1]:
        gate.register_forward_hook(lambda module, args, out: scalars.append(out[:, :c]))
    model.register_forward_pre_hook(lambda module, args, kwargs=None: scalars.clear())
    model.output_mlp = Summed(model.output_mlp)


def radial_e3nn(model) -> None:
    """Replaces every layer's radial MLP by e3nn's (and MACE's):
    :class:`e3nn.nn.FullyConnectedNet` of the same widths, unit weights times
    1/sqrt(fan-in) in the forward pass, no biases, SiLU normalised to a unit
    second moment."""
    from e3nn import nn

    import torch

    for conv in model.convs:
        radial = conv.radial
        conv.radial = nn.FullyConnectedNet(
            [radial.lin1.in_features, radial.lin1.out_features, radial.lin2.out_features],
            torch.nn.functional.silu)


def freeze_biases_at_zero(radial) -> None:
    """Sets the biases of a :class:`~acn_pyg.nn.RadialMLP` to zero and
    freezes them."""
    import torch

    with torch.no_grad():
        for lin in (radial.lin1, radial.lin2):
            lin.bias.zero_()
            lin.bias.requires_grad_(False)


def radial_without_biases(model) -> None:
    """Sets the biases of every layer's radial MLP to zero and freezes them:
    e3nn's (and MACE's) radial MLP, which has none."""
    for conv in model.convs:
        freeze_biases_at_zero(conv.radial)


def worker(job: dict) -> dict:
    """One model, size and seed: built, trained and its curve returned. A job
    may hold, besides its sizes and data: ``"config"`` (:func:`job_config`),
    ``"lr"``, ``"amsgrad"``, ``"patience"``, ``"mace"`` (:func:`mace_model`'s
    options), ``"acn_layers"`` (:func:`acn_layers_in_mace`'s), ``"acn_parts"``
    (:func:`acn_parts_in_mace`'s), ``"lr_scale": "fan_in"``
    (:func:`fan_in_param_groups`) and, for AtomCloudNet, ``"readout_hidden"``
    (:func:`one_readout`), ``"layer_readouts": True`` (:func:`layer_readouts`),
    ``"radial_bias": False``
    (:func:`radial_without_biases`) and ``"radial_e3nn": True``
    (:func:`radial_e3nn`)."""
    import torch

    sys.path.insert(0, HERE)
    from common import machine, plain_loop
    from acn_pyg.graph import radius_graph
    from acn_pyg.train import build_model, prepare

    torch.set_num_threads(job["threads"])
    name = job["model"]
    cfg = job_config(job)
    prep = prepare(cfg)
    if not prep.extensive:
        raise ValueError(f"per_example.py compares energies (extensive targets); "
                         f"{job['target']} is intensive")
    torch.manual_seed(job["seed"])
    if name == "mace":
        train = prep.dataset[prep.split["train"]]
        counts = [radius_graph(d.pos, 5.0).size(1) / d.num_nodes for d in train]
        model = mace_model(prep, sum(counts) / len(counts), acn_layers=job.get("acn_layers"),
                           acn_parts=job.get("acn_parts", ()), **job.get("mace", {}))
    else:
        model = build_model(cfg, prep.extensive, prep.mean, prep.std, prep.atomref)
        if "readout_hidden" in job:
            one_readout(model, job["readout_hidden"])
        if job.get("layer_readouts", False):
            layer_readouts(model)
        if job.get("radial_bias", True) is False:
            radial_without_biases(model)
        if job.get("radial_e3nn", False):
            radial_e3nn(model)
    lr, amsgrad, label = MODELS[name]
    lr, label = job.get("lr", lr), job.get("label", label)
    amsgrad = job.get("amsgrad", amsgrad)
    curve = []
    # Frozen parameters (radial_bias=False) get no gradient, which Adam skips.
    param_groups = fan_in_param_groups(model, lr) if job.get("lr_scale") == "fan_in" else None
    test, best, epochs = plain_loop(model, prep, lr, job["batch_size"], job["minutes"],
                                    job["seed"], amsgrad=amsgrad, curve=curve,
                                    patience=job.get("patience", 5),
                                    param_groups=param_groups)
    print(f"n={job['size']} {name} seed {job['seed']}: test MAE {1e3 * test:.1f} meV, "
          f"{epochs} epochs", flush=True)
    return {**job, "label": label, "lr": lr, "amsgrad": amsgrad, "unit": prep.unit,
            "parameters": sum(p.numel() for p in model.parameters()),
            "test_mae": test, "best_val_mae": best, "epochs": epochs, "curve": curve,
            "machine": machine()}


def launch(job: dict, mace_python: str) -> dict:
    """Runs :func:`worker` in a fresh process (MACE's in its environment)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = os.path.join(tmp, "job.json"), os.path.join(tmp, "out.json")
        with open(spec, "w") as f:
            json.dump(job, f)
        env = dict(os.environ)
        python = sys.executable
        if job["model"] == "mace":
            python = mace_python
            env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # e3nn 0.4.4's constants
        if not os.path.exists(python):
            raise FileNotFoundError(f"{python} not found: make MACE's environment with "
                                    f"'bash benchmarks/mace_env.sh' or pass --mace-python")
        subprocess.run([python, os.path.abspath(__file__), "--worker", spec, out], env=env,
                       check=True)
        with open(out) as f:
            return json.load(f)


def best_so_far(curve: list, key: str, limit: float) -> float:
    """Test MAE of the best validation epoch among the epochs whose
    :obj:`key` (``"seconds"`` or ``"epoch"``) is at most :obj:`limit`; NaN
    before the first epoch, and for an epoch the run did not reach."""
    if key == "epoch" and (not curve or curve[-1]["epoch"] < limit):
        return float("nan")
    done = [c["test_mae"] for c in curve if c[key] <= limit]
    return done[-1] if done else float("nan")


def table(runs: list, budgets: list, epochs: list) -> list:
    lines = []
    for size in sorted({r["size"] for r in runs}, reverse=True):
        rows = [r for r in runs if r["size"] == size]
        lines += [f"**{size} training molecules**, test MAE in meV of the best validation "
                  f"epoch so far, by minutes of training (clock of the loop) and by epochs",
                  "", "| model | parameters | lr | epochs run | "
                  + " | ".join(f"{b:g} min" for b in budgets) + " | "
                  + " | ".join(f"epoch {e}" for e in epochs) + " |",
                  "| --- " * (4 + len(budgets) + len(epochs)) + "|"]
        for r in rows:
            cells = ([best_so_far(r["curve"], "seconds", 60 * b) for b in budgets]
                     + [best_so_far(r["curve"], "epoch", e) for e in epochs])
            lines.append(
                f"| {r['label']} | {r['parameters']:,} | {r['lr']:g}"
                + (" (AMSGrad)" if r["amsgrad"] else "") + f" | {r['epochs']} | "
                + " | ".join("-" if c != c else f"{1e3 * c:.1f}" for c in cells) + " |")
        lines.append("")
    return lines


def plot(runs: list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in runs}, reverse=True)
    fig, axes = plt.subplots(2, len(sizes), figsize=(5 * len(sizes), 7.5), squeeze=False)
    for col, size in enumerate(sizes):
        for r in (r for r in runs if r["size"] == size):
            xs = [c["seconds"] / 60 for c in r["curve"]]
            ys = [1e3 * c["test_mae"] for c in r["curve"]]
            axes[0][col].plot(xs, ys, label=r["label"])
            axes[1][col].plot([c["epoch"] for c in r["curve"]], ys, label=r["label"])
        for row, xlabel in enumerate(("CPU minutes (training and validation)", "epochs")):
            ax = axes[row][col]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("test MAE, U0 (meV)")
            ax.set_title(f"{size} training molecules")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--worker":
        with open(sys.argv[2]) as f:
            row = worker(json.load(f))
        with open(sys.argv[3], "w") as f:
            json.dump(row, f)
        return 0
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"any of {', '.join(MODELS)} (default: all)")
    p.add_argument("--sizes", default="1000,100",
                   help="training molecules (default: 1000,100)")
    p.add_argument("--seeds", default="0", help="initialisation and shuffling (default: 0)")
    p.add_argument("--minutes", type=float, default=20.0,
                   help="training minutes per run (default: 20)")
    p.add_argument("--budgets", default="1,4,10,20",
                   help="minutes shown in the table (default: 1,4,10,20)")
    p.add_argument("--epochs", default="10,30,100",
                   help="epochs shown in the table (default: 10,30,100)")
    p.add_argument("--target", default="U0", help="an extensive QM9 target (default: U0)")
    p.add_argument("--val-size", type=int, default=500, help="(default: 500)")
    p.add_argument("--test-size", type=int, default=1000, help="(default: 1000)")
    p.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per run (default: 2)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (default: 1)")
    p.add_argument("--root", default="data/QM9", help="QM9 folder (default: data/QM9)")
    p.add_argument("--mace-python", default=os.path.join(".venv-mace", "bin", "python"),
                   help="the interpreter of MACE's environment (default: "
                        ".venv-mace/bin/python)")
    p.add_argument("--out", default=os.path.join(RESULTS, "per_example"),
                   help="output stem: .json, .md and .png (default: "
                        "benchmarks/results/per_example)")
    args = p.parse_args(argv)
    from common import save_results

    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        p.error(f"unknown model(s) {unknown}: choose from {list(MODELS)}")
    jobs = [dict(model=name, size=int(size), seed=int(seed), minutes=args.minutes,
                 target=args.target, val_size=args.val_size, test_size=args.test_size,
                 batch_size=args.batch_size, threads=args.threads,
                 root=os.path.abspath(args.root))
            for size, seed, name in itertools.product(args.sizes.split(","),
                                                      args.seeds.split(","), models)]
    with ThreadPool(args.jobs) as pool:
        runs = pool.map(lambda job: launch(job, args.mace_python), jobs, chunksize=1)
    budgets = [float(b) for b in args.budgets.split(",")]
    epochs = [int(e) for e in args.epochs.split(",")]
    lines = [f"QM9 {args.target}, {args.test_size} test molecules, batch {args.batch_size}, "
             f"{args.minutes:g} min per run on {args.threads} CPU thread(s), {args.jobs} run(s) "
             f"at once",
             ""] + table(runs, budgets, epochs)
    save_results(args.out, args, runs, lines, key="runs")
    plot(runs, args.out + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
