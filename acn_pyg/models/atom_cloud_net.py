from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from e3nn import o3
from torch import Tensor
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

from acn_pyg.graph import RadiusGraph
from acn_pyg.nn.conv import AtomCloudConv
from acn_pyg.nn.embedding import EdgeEmbedding
from acn_pyg.nn.gate import Gate
from acn_pyg.nn.heads import AtomicChargesHead, DipoleHead, SymmetricTensorHead
from acn_pyg.nn.many_body import MANY_BODY_TERMS, ManyBodyTerms
from acn_pyg.nn.normalized import NormalizedEmbedding, NormalizedLinear
from acn_pyg.nn.radial_mlp import stacked_radial_weights
from acn_pyg.nn.pool import global_power_mean_pool
from acn_pyg.utils.checks import (MAX_ATOMIC_NUMBER, check_atoms, check_edge_index,
                                  check_features, check_matches_module, check_same_device,
                                  is_tracing)
from acn_pyg.utils.irreps import IrrepsLike, as_irreps

POOLINGS = ("add", "mean", "max", "power")
#: Stack the radial MLPs of equal shape on CPU too (on CUDA always); see forward().
STACK_RADIAL_ON_CPU = False
READOUTS = ("molecule", "atom")
#: What the model predicts: see :class:`AtomCloudNet`'s :obj:`output`.
OUTPUTS = ("scalar", "charges", "dipole", "tensor")


class AtomCloudNet(torch.nn.Module):
    r"""AtomCloudNet: stacked :class:`~acn_pyg.nn.AtomCloudConv` layers over
    the cloud of atoms within a cutoff, pooled into a molecular property (or
    read out per atom). A drop-in for
    :class:`torch_geometric.nn.models.SchNet`: same call, same
    :obj:`mean`/:obj:`std`/:obj:`atomref` handling.

    .. math::
        \mathbf{h}^{(0)}_i &= \mathrm{Embedding}(z_i) \\
        \mathbf{h}^{(t+1)}_i &= \mathbf{h}^{(t)}_i + \mathrm{Gate}\left(
            \mathrm{AtomCloudConv}^{(t)}(\mathbf{h}^{(t)}, \mathbf{p})_i \right) \\
        \mathbf{a}_i &= \mathrm{MLP}_\mathrm{atom}\left( \mathbf{h}^{(T)}_{i,\mathrm{0e}}
            \,\|\, \mathbf{f}_i \right)

    where the residual is added wherever both sides hold the same irreps
    (always for the leading scalars), the last layer outputs scalars only and
    :math:`\mathbf{f}_i` are optional invariant atom features: the many-body
    sums of :class:`~acn_pyg.nn.ManyBodyTerms` (:obj:`many_body`) and any
    :obj:`extra_features` given to :meth:`forward`. Then

    * :obj:`readout="atom"`: :math:`y_i = \sigma\, \mathrm{MLP}_\mathrm{out}(\mathbf{a}_i)
      + \mu + y^\mathrm{ref}_{z_i}`;
    * :obj:`pooling="add"` (extensive, size-consistent):
      :math:`y = \sum_i \left( \sigma\, \mathrm{MLP}_\mathrm{out}(\mathbf{a}_i) + \mu
      + y^\mathrm{ref}_{z_i} \right)`, as in SchNet;
    * :obj:`pooling="mean" | "max" | "power"` (intensive):
      :math:`y = \sigma\, \mathrm{MLP}_\mathrm{out}(\mathrm{pool}_i\, \mathbf{a}_i) + \mu
      + \sum_i y^\mathrm{ref}_{z_i}`; :obj:`"power"` is the root-mean-square
      pooling of the original work.

    With :obj:`output` other than :obj:`"scalar"` the model reads out
    through a head of :mod:`acn_pyg.nn.heads` instead of
    :math:`\mathrm{MLP}_\mathrm{out}`: :obj:`"charges"` per-atom charges
    (:class:`~acn_pyg.nn.AtomicChargesHead`, :obj:`[num_atoms, 1]`, in e,
    summing to the total charge), :obj:`"dipole"` a dipole vector
    (:class:`~acn_pyg.nn.DipoleHead`, :obj:`[num_graphs, 3]`) and
    :obj:`"tensor"` a symmetric 3x3 tensor
    (:class:`~acn_pyg.nn.SymmetricTensorHead`, :obj:`[num_graphs, 3, 3]`).
    For the last two the last layer also outputs :obj:`head_channels`
    vectors (:obj:`1o`) or rank-2 tensors (:obj:`2e`), which the head maps
    equivariantly: the dipole rotates as :math:`R\boldsymbol{\mu}` and the
    tensor as :math:`R\mathbf{A}R^\top` when the structure is rotated or
    reflected.

    Args:
        hidden_channels (int, optional): Number of scalar channels.
            (default: :obj:`64`)
        hidden_irreps (int, str or e3nn.o3.Irreps, optional): Irreps carried
            between layers; must start with :obj:`hidden_channels` scalars
            (:obj:`0e`) and stay within :obj:`lmax`. :obj:`None` means
            :obj:`hidden_channels` scalars only, the fastest choice; e.g.
            :obj:`"64x0e + 16x1o + 16x2e"` carries directions between layers.
            (default: :obj:`None`)
        num_layers (int, optional): Number of AtomCloudConv layers.
            (default: :obj:`3`)
        cutoff (float, optional): Cutoff radius in Angstrom. (default: :obj:`5.0`)
        lmax (int, optional): Largest spherical-harmonic degree. (default: :obj:`2`)
        num_basis (int, optional): Number of radial basis functions. (default: :obj:`8`)
        radial_hidden (int, optional): Hidden width of the radial MLPs.
            (default: :obj:`64`)
        max_num_neighbors (int, optional): Neighbour limit of the default
            radius graph; :obj:`None` keeps every neighbour. (default: :obj:`None`)
        avg_num_neighbors (float, optional): Aggregation normaliser of every
            layer. (default: :obj:`16.0`)
        product_channels (int, optional): If positive, every layer also
            couples its cloud with itself (:obj:`product_channels` channels per
            irrep): see :class:`~acn_pyg.nn.conv.SymmetricProduct`.
            (default: :obj:`0`, off)
        product_correlation (int, optional): The most cloud factors in the
            products: :obj:`2` (pairs of neighbours, body order three) or
            :obj:`3` (triples, body order four), as MACE's correlation order.
            (default: :obj:`2`)
        element_dependent (bool, optional): If :obj:`True`, every layer's
            product paths and self-interaction are weighted per atom by its
            element embedding :math:`\mathbf{h}^{(0)}_i` (the layers'
            :obj:`attr_channels`), as MACE's element-dependent weights; the
            factors are :class:`~acn_pyg.nn.conv.symmetric_product.ElementFactors`,
            plain matrices (not weight-normalised) that start at zero.
            (default: :obj:`False`)
        product_basis (bool, optional): If :obj:`True`, every layer's new
            features are a linear map of its products contracted per channel,
            as MACE's product basis (:class:`~acn_pyg.nn.AtomCloudConv`'s
            :obj:`product_basis`), plus the self-interaction. Needs
            :obj:`product_channels > 0`. (default: :obj:`False`)
        input_linear (bool, optional): If :obj:`True`, every layer mixes its
            input channels before its cloud (:class:`~acn_pyg.nn.AtomCloudConv`'s
            :obj:`input_linear`, MACE's :obj:`linear_up`). (default: :obj:`False`)
        self_interaction_rank (int, optional): If positive, every layer's
            self-interaction matrix depends on the element embedding with this
            rank (:class:`~acn_pyg.nn.AtomCloudConv`'s
            :obj:`self_interaction_rank`, MACE's element-dependent skip
            connection). Needs :obj:`element_dependent=True`.
            (default: :obj:`0`, off)
        scalar_activation (bool, optional): If :obj:`False`, the layers'
            scalar outputs skip the SiLU of their :class:`~acn_pyg.nn.Gate`:
            up to the atom MLP the scalars are then polynomials of the clouds
            (through the power spectra and products), as in MACE's
            interactions. (default: :obj:`True`)
        radial_gain (float, optional): Constant factor on every layer's
            radial MLP output (see :class:`~acn_pyg.nn.AtomCloudConv`).
            (default: :obj:`10.0`)
        embedding_std (float, optional): Standard deviation of the element
            embedding's initial entries. With :obj:`radial_gain=1.5` and
            :obj:`embedding_std=0.45` the clouds and products of a product-basis
            model start as small as MACE's (about 0.02 and 0.01 rms against
            0.2-0.5 with the defaults): the model starts nearly linear in the
            clouds. (default: :obj:`1.0`)
        residual (bool, optional): If :obj:`False`, every layer's output
            replaces its input instead of being added to it, as in MACE, whose
            self-interaction (here the product basis's :math:`\mathbf{W}_\mathrm{self}
            \mathbf{x}`) is the only path from a layer's input to its output.
            (default: :obj:`True`)
        weight_norm (bool, optional): If :obj:`True`, every weight matrix
            (the embedding's rows, the layers' radial MLPs and linear maps, the
            atom and output MLPs, the output heads) is :math:`g\, \mathbf{v} / \lVert
            \mathbf{v} \rVert` per output with a direction :math:`\mathbf{v}`
            that starts short, initialised to the same function as without:
            Adam's steps turn such weights fast at first and slower as they
            lengthen them, which makes training depend little on the learning
            rate (:func:`~acn_pyg.nn.normalized.weight_normalized`).
            (default: :obj:`True`)
        many_body (bool or tuple of str, optional): If :obj:`True` (all
            terms) or a tuple of term names, the invariant many-body features
            of :class:`~acn_pyg.nn.ManyBodyTerms` (normalised) are computed on
            the fly from :obj:`z` and :obj:`pos` and concatenated with the
            learned atom features after the convolutions, as in the original
            work. (default: :obj:`False`)
        many_body_cutoff (float, optional): Cutoff of those sums in Angstrom;
            :obj:`None` sums over the whole molecule. (default: :obj:`None`)
        num_extra_features (int, optional): Number of extra invariant atom
            features passed to :meth:`forward` as :obj:`extra_features`.
            (default: :obj:`0`)
        pooling (str, optional): :obj:`"add"`, :obj:`"mean"`, :obj:`"max"` or
            :obj:`"power"`. (default: :obj:`"add"`)
        readout (str, optional): :obj:`"molecule"` or :obj:`"atom"`.
            (default: :obj:`"molecule"`)
        out_channels (int, optional): Number of predicted properties.
            (default: :obj:`1`)
        output (str, optional): :obj:`"scalar"`, :obj:`"charges"`,
            :obj:`"dipole"` or :obj:`"tensor"`, as above.
            (default: :obj:`"scalar"`)
        head_channels (int, optional): Vectors or tensors the last layer
            gives the dipole or tensor head. (default: :obj:`None`, a quarter
            of :obj:`hidden_channels`)
        head_std (float, optional): Scale of the traceless part of
            :obj:`output="tensor"` (:class:`~acn_pyg.nn.SymmetricTensorHead`'s
            :obj:`anisotropic_std`). (default: :obj:`None`, :obj:`std`)
        anisotropic_gradient (float, optional): The factor on the gradient
            that the traceless part of :obj:`output="tensor"` passes into the
            layers (:class:`~acn_pyg.nn.SymmetricTensorHead`'s
            :obj:`anisotropic_gradient`); the prediction does not depend on
            it. (default: :obj:`1.0`)
        charge_constraint (bool, optional): Whether predicted charges
            (:obj:`output="charges"` or :obj:`"dipole"`) sum to the total
            charge. (default: :obj:`True`)
        mean (float, optional): :math:`\mu` above. (default: :obj:`None`, zero)
        std (float, optional): :math:`\sigma` above. (default: :obj:`None`, one)
        atomref (torch.Tensor, optional): Reference property per element,
            indexed by atomic number: shape :obj:`[K]` or
            :obj:`[K, out_channels]`, :math:`K \leq 101`, as returned by
            :meth:`torch_geometric.datasets.QM9.atomref`. (default: :obj:`None`)
        interaction_graph (callable, optional): Builds :obj:`edge_index` from
            :obj:`(pos, batch)`; :obj:`None` means
            :class:`~acn_pyg.graph.RadiusGraph` with :obj:`cutoff` and
            :obj:`max_num_neighbors`. (default: :obj:`None`)

    Shapes:
        - **input:** atomic numbers :math:`(|\mathcal{V}|)`, positions
          :math:`(|\mathcal{V}|, 3)`, batch :math:`(|\mathcal{V}|)` *(optional)*,
          extra features :math:`(|\mathcal{V}|, \mathrm{num\_extra\_features})`
          *(optional)*
        - **output:** :math:`(|\mathcal{G}|, \mathrm{out\_channels})`, or
          :math:`(|\mathcal{V}|, \mathrm{out\_channels})` for :obj:`readout="atom"`;
          :math:`(|\mathcal{V}|, 1)` for :obj:`output="charges"`,
          :math:`(|\mathcal{G}|, 3)` for :obj:`"dipole"` and
          :math:`(|\mathcal{G}|, 3, 3)` for :obj:`"tensor"`
    """

    def __init__(
        self,
        hidden_channels: int = 64,
        hidden_irreps: Optional[IrrepsLike] = None,
        num_layers: int = 3,
        cutoff: float = 5.0,
        lmax: int = 2,
        num_basis: int = 8,
        radial_hidden: int = 64,
        max_num_neighbors: Optional[int] = None,
        avg_num_neighbors: float = 16.0,
        product_channels: int = 0,
        product_correlation: int = 2,
        element_dependent: bool = False,
        product_basis: bool = False,
        input_linear: bool = False,
        self_interaction_rank: int = 0,
        scalar_activation: bool = True,
        radial_gain: float = 10.0,
        embedding_std: float = 1.0,
        residual: bool = True,
        weight_norm: bool = True,
        many_body: Union[bool, Sequence[str]] = False,
        many_body_cutoff: Optional[float] = None,
        num_extra_features: int = 0,
        pooling: str = "add",
        readout: str = "molecule",
        out_channels: int = 1,
        output: str = "scalar",
        head_channels: Optional[int] = None,
        head_std: Optional[float] = None,
        anisotropic_gradient: float = 1.0,
        charge_constraint: bool = True,
        mean: Optional[float] = None,
        std: Optional[float] = None,
        atomref: Optional[Tensor] = None,
        interaction_graph: Optional[Callable[..., Tensor]] = None,
    ):
        super().__init__()
        # Drawn first: the initial weights follow this seed alone.
        init_seed = int(torch.randint(2 ** 62, ()))
        if pooling not in POOLINGS:
            raise ValueError(f"'pooling' must be one of {POOLINGS} (got {pooling!r})")
        if readout not in READOUTS:
            raise ValueError(f"'readout' must be one of {READOUTS} (got {readout!r})")
        if output not in OUTPUTS:
            raise ValueError(f"'output' must be one of {OUTPUTS} (got {output!r})")
        if output != "scalar" and (readout != "molecule" or out_channels != 1):
            raise ValueError(f"output={output!r} has its own readout: leave 'readout' and "
                             "'out_channels' at their defaults")
        head_channels = max(hidden_channels // 4, 1) if head_channels is None else head_channels
        if output in ("dipole", "tensor") and not (
                isinstance(head_channels, int) and head_channels >= 1):
            raise ValueError(f"'head_channels' must be a positive int (got {head_channels!r})")
        if output != "tensor" and anisotropic_gradient != 1.0:
            raise ValueError(f"'anisotropic_gradient' applies to output='tensor' only "
                             f"(got output={output!r})")
        if output == "tensor" and lmax < 2 or output == "dipole" and lmax < 1:
            raise ValueError(f"output={output!r} needs lmax >= {2 if output == 'tensor' else 1} "
                             f"(got {lmax})")
        if not (isinstance(embedding_std, (int, float)) and embedding_std > 0):
            raise ValueError(f"'embedding_std' must be a positive number (got {embedding_std!r})")
        self.embedding_std = float(embedding_std)
        self.residual = bool(residual)
        if not (isinstance(num_layers, int) and num_layers >= 1):
            raise ValueError(f"'num_layers' must be a positive int (got {num_layers!r})")
        if not (isinstance(num_extra_features, int) and num_extra_features >= 0):
            raise ValueError(
                f"'num_extra_features' must be a non-negative int (got {num_extra_features!r})")
        scalars = o3.Irreps(f"{hidden_channels}x0e")
        hidden = _hidden_irreps(hidden_channels, hidden_irreps, lmax)
        self._config = dict(
            hidden_channels=hidden_channels,
            hidden_irreps=None if hidden_irreps is None else str(as_irreps(hidden_irreps)),
            num_layers=num_layers, cutoff=float(cutoff), lmax=lmax, num_basis=num_basis,
            radial_hidden=radial_hidden, max_num_neighbors=max_num_neighbors,
            avg_num_neighbors=float(avg_num_neighbors), product_channels=product_channels,
            product_correlation=product_correlation, element_dependent=bool(element_dependent),
            product_basis=bool(product_basis), input_linear=bool(input_linear),
            self_interaction_rank=self_interaction_rank,
            scalar_activation=bool(scalar_activation),
            radial_gain=float(radial_gain), embedding_std=float(embedding_std),
            residual=bool(residual), weight_norm=bool(weight_norm),
            many_body=many_body if isinstance(many_body, bool) else list(many_body),
            many_body_cutoff=many_body_cutoff, num_extra_features=num_extra_features,
            pooling=pooling, readout=readout, out_channels=out_channels, output=output,
            head_channels=head_channels,
            head_std=None if head_std is None else float(head_std),
            anisotropic_gradient=float(anisotropic_gradient),
            charge_constraint=charge_constraint,
            mean=None if mean is None else float(mean), std=None if std is None else float(std))
        self._custom_graph = interaction_graph is not None

        self.hidden_channels = hidden_channels
        self.hidden_irreps = hidden
        self.num_layers = num_layers
        self.cutoff = float(cutoff)
        self.lmax = lmax
        self.num_basis = num_basis
        self.radial_hidden = radial_hidden
        self.max_num_neighbors = max_num_neighbors
        self.avg_num_neighbors = avg_num_neighbors
        self.product_channels = product_channels
        self.product_correlation = product_correlation
        self.element_dependent = bool(element_dependent)
        self.product_basis = bool(product_basis)
        self.input_linear = bool(input_linear)
        if self_interaction_rank and not element_dependent:
            raise ValueError("'self_interaction_rank' > 0 needs element_dependent=True")
        self.self_interaction_rank = self_interaction_rank
        self.scalar_activation = bool(scalar_activation)
        self.num_extra_features = num_extra_features
        self.weight_norm = bool(weight_norm)
        self.pooling = pooling
        self.readout = readout
        self.out_channels = out_channels
        self.output = output
        self.head_channels = head_channels
        self.mean = 0.0 if mean is None else float(mean)
        self.std = 1.0 if std is None else float(std)

        # The default graph trusts the inputs that forward() has checked.
        self.interaction_graph = (RadiusGraph(cutoff, max_num_neighbors, check_inputs=False)
                                  if interaction_graph is None else interaction_graph)
        self.embedding = (NormalizedEmbedding if weight_norm else torch.nn.Embedding)(
            MAX_ATOMIC_NUMBER + 1, hidden_channels)
        linear = NormalizedLinear if weight_norm else torch.nn.Linear
        self.edge_embedding = EdgeEmbedding(cutoff, lmax, num_basis)

        head_irreps = {"dipole": f"{head_channels}x1o",
                       "tensor": f"{head_channels}x2e"}.get(output)
        last = scalars if head_irreps is None else scalars + o3.Irreps(head_irreps)
        self.convs, self.gates = self._layers(scalars, hidden, last, radial_gain)
        # Layers whose radial MLPs have one shape get their weights computed
        # together (same numbers, fewer kernels: see stacked_radial_weights).
        groups: Dict[int, List[int]] = {}
        for t, conv in enumerate(self.convs):
            groups.setdefault(conv.radial.out_channels, []).append(t)
        self._radial_groups = [g for g in groups.values() if len(g) > 1]

        if many_body is True:
            many_body = MANY_BODY_TERMS
        self.many_body = (ManyBodyTerms(many_body, many_body_cutoff, normalize=True)
                          if many_body else None)
        num_many_body = self.many_body.num_features if self.many_body is not None else 0
        self.atom_mlp = torch.nn.Sequential(
            linear(hidden_channels + num_many_body + num_extra_features, hidden_channels),
            torch.nn.SiLU(),
        )
        self.output_mlp = torch.nn.Sequential(
            linear(hidden_channels, hidden_channels // 2),
            torch.nn.SiLU(),
            linear(hidden_channels // 2, out_channels),
        ) if output == "scalar" else torch.nn.Sequential()
        std_ = 1.0 if std is None else float(std)
        self.head = None
        if output == "charges":
            self.head = AtomicChargesHead(hidden_channels, charge_constraint, std_, atomref,
                                          weight_norm)
        elif output == "dipole":
            self.head = DipoleHead(hidden_channels, head_irreps, std_, charge_constraint,
                                   weight_norm)
        elif output == "tensor":
            self.head = SymmetricTensorHead(hidden_channels, head_irreps, std_, atomref,
                                            head_std, weight_norm, anisotropic_gradient)

        if atomref is not None and output == "scalar":
            self.register_buffer("atomref", _padded_atomref(atomref, out_channels))
        else:
            self.atomref = None
        self._reset_parameters(init_seed)

    def config(self) -> Dict[str, object]:
        """The constructor arguments of this model as plain data (numbers,
        strings, lists and, for :obj:`atomref`, a tensor): what
        :func:`acn_pyg.save_model` stores, and
        ``AtomCloudNet(**model.config())`` builds the same architecture.
        A model built with a custom :obj:`interaction_graph` (a callable)
        has none and raises a :class:`ValueError`."""
        if self._custom_graph:
            raise ValueError("this AtomCloudNet was built with a custom 'interaction_graph' (a "
                             "callable), which cannot be saved as data; build it with "
                             "cutoff/max_num_neighbors instead")
        atomref = None if self.atomref is None else self.atomref.detach().cpu().clone()
        return dict(self._config, atomref=atomref)

    def save(self, path: str, **info) -> None:
        """Saves this model to :obj:`path` as a self-contained checkpoint
        (:func:`acn_pyg.save_model`; :obj:`info`: its keyword arguments,
        e.g. :obj:`target`, :obj:`unit`, :obj:`elements`)."""
        from acn_pyg.inference.checkpoint import save_model
        save_model(path, self, **info)

    @classmethod
    def load(cls, path: str, device=None) -> "AtomCloudNet":
        """The model of a checkpoint of :meth:`save` or of ``acn-pyg train``
        (:func:`acn_pyg.load_model`), in evaluation mode."""
        from acn_pyg.inference.checkpoint import load_model
        model = load_model(path, device)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not an {cls.__name__}")
        return model

    def _layers(self, scalars: o3.Irreps, hidden: o3.Irreps, last: o3.Irreps,
                radial_gain: float):
        """The convolutions and their gates: scalars in, :obj:`hidden`
        between layers, :obj:`last` out of the last."""
        convs, gates = torch.nn.ModuleList(), torch.nn.ModuleList()
        irreps_in = scalars
        for t in range(self.num_layers):
            irreps_out = last if t == self.num_layers - 1 else hidden
            gate = Gate(irreps_out, self.scalar_activation)
            convs.append(AtomCloudConv(
                irreps_in, gate.irreps_in, cutoff=self.cutoff, lmax=self.lmax,
                num_basis=self.num_basis, radial_hidden=self.radial_hidden,
                max_num_neighbors=self.max_num_neighbors,
                avg_num_neighbors=self.avg_num_neighbors,
                product_channels=self.product_channels, radial_gain=radial_gain,
                weight_norm=self.weight_norm, product_correlation=self.product_correlation,
                attr_channels=self.hidden_channels if self.element_dependent else 0,
                product_basis=self.product_basis, input_linear=self.input_linear,
                self_interaction_rank=self.self_interaction_rank))
            gates.append(gate)
            irreps_in = irreps_out
        return convs, gates

    def reset_parameters(self) -> None:
        r"""Draws new weights. Each part (the embedding, every layer's radial
        MLP, products and linear map, the atom MLP, the readout or head)
        draws from its own stream of one seed taken from PyTorch's generator,
        so models built at one seed that differ only in their output (e.g.
        :obj:`output="tensor"` and a scalar) start from the same layers and
        the same readout MLP."""
        self._reset_parameters(int(torch.randint(2 ** 62, ())))

    def _reset_parameters(self, seed: int) -> None:
        parts: List[List[Optional[torch.nn.Module]]] = [[self.embedding], [self.edge_embedding]]
        for conv in self.convs:
            # The element-dependent factors start at one and draw nothing.
            parts += [[conv.edge_embedding, conv.radial, conv.input_linear], [conv.product],
                      [conv.linear, conv.self_weights, conv.self_mix]]
        readout = self.head.modules() if self.head is not None else self.output_mlp
        parts += [list(self.atom_mlp), [m for m in readout if m is not self.head]]
        for k, modules in enumerate(parts):
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed + k)
                for module in modules:
                    if module is not None and hasattr(module, "reset_parameters"):
                        module.reset_parameters()
        if self.embedding_std != 1.0:  # N(0, 1) entries scaled (the row gains, if normalised)
            with torch.no_grad():
                scaled = (self.embedding.gain if isinstance(self.embedding, NormalizedEmbedding)
                          else self.embedding.weight)
                scaled.mul_(self.embedding_std)

    def forward(self, z: Tensor, pos: Tensor, batch: Optional[Tensor] = None,
                extra_features: Optional[Tensor] = None,
                edge_index: Optional[Tensor] = None,
                total_charge: Optional[Tensor] = None) -> Tensor:
        r"""
        Args:
            z (torch.Tensor): Atomic numbers, 1 to 100.
            pos (torch.Tensor): Positions in Angstrom.
            batch (torch.Tensor, optional): Graph index of every atom.
                (default: :obj:`None`, one graph)
            extra_features (torch.Tensor, optional): Extra invariant atom
                features, required when :obj:`num_extra_features > 0`.
            edge_index (torch.Tensor, optional): The interaction graph,
                :obj:`[2, num_edges]` (source, target), e.g. an MD engine's
                neighbour list within :obj:`cutoff`; edges beyond the cutoff
                contribute nothing. (default: :obj:`None`, built from
                :obj:`pos`)
            total_charge (torch.Tensor, optional): Total charge of every
                structure, :obj:`[num_graphs]`, for :obj:`output="charges"`
                and :obj:`"dipole"`. (default: :obj:`None`, neutral)
        """
        size = self._check_inputs(z, pos, batch, extra_features)
        if batch is None:
            batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
        a, _, rest = self._encode(z, pos, batch, extra_features, size, edge_index)

        if self.output == "charges":
            return self.head(a, z, batch, size, total_charge)
        if self.output == "dipole":
            return self.head(a, rest, z, pos, batch, size, total_charge)
        if self.output == "tensor":
            return self.head(a, rest, z, batch, size)
        if self.readout == "atom" or self.pooling == "add":
            y = self._scale_shift(self.output_mlp(a))
            if self.atomref is not None:
                y = y + self.atomref.index_select(0, z)
            if self.readout == "atom":
                return y
            return global_add_pool(y, batch, size)

        if self.pooling == "mean":
            pooled = global_mean_pool(a, batch, size)
        elif self.pooling == "max":
            pooled = global_max_pool(a, batch, size)
        else:
            pooled = global_power_mean_pool(a, batch, size)
        y = self._scale_shift(self.output_mlp(pooled))
        if self.atomref is not None:
            y = y + global_add_pool(self.atomref.index_select(0, z), batch, size)
        return y

    def atom_features(self, z: Tensor, pos: Tensor, batch: Optional[Tensor] = None,
                      extra_features: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""The invariant atom features :math:`\mathbf{a}_i` that the output
        MLP reads, and the interaction graph they were computed on: what an
        auxiliary head (e.g. :class:`~acn_pyg.nn.DenoisingHead`) reads.
        Same arguments as :meth:`forward`.

        Shapes:
            - **output:** :math:`(|\mathcal{V}|, \mathrm{hidden\_channels})`
              and :obj:`edge_index` :math:`(2, |\mathcal{E}|)`
        """
        size = self._check_inputs(z, pos, batch, extra_features)
        if batch is None:
            batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
        return self._encode(z, pos, batch, extra_features, size)[:2]

    def _check_inputs(self, z: Tensor, pos: Tensor, batch: Optional[Tensor],
                      extra_features: Optional[Tensor]) -> int:
        """Checks the inputs (unless traced) and returns the number of graphs."""
        num_atoms = pos.size(0) if isinstance(pos, Tensor) else 0
        if is_tracing():
            return self._num_graphs(batch, num_atoms) if self.readout != "atom" else 0
        check_same_device(z=z, pos=pos, batch=batch, extra_features=extra_features)
        check_matches_module(self, z=z, pos=pos, extra_features=extra_features)
        # All input checks and the graph count in one host sync, before
        # the layers, while the GPU queue is short.
        size = check_atoms(z, pos, batch)
        if self.num_extra_features > 0:
            if extra_features is None:
                raise ValueError(
                    f"'extra_features' of shape [{num_atoms}, {self.num_extra_features}] "
                    f"is required (num_extra_features={self.num_extra_features})")
            check_features(extra_features, num_atoms, self.num_extra_features,
                           "extra_features")
        elif extra_features is not None:
            raise ValueError("'extra_features' was given but the model was built with "
                             "num_extra_features=0")
        return size

    def _encode(self, z: Tensor, pos: Tensor, batch: Tensor, extra_features: Optional[Tensor],
                size: int, edge_index: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        if edge_index is not None:
            if not is_tracing():
                check_edge_index(edge_index, pos.size(0), "edge_index")
        elif isinstance(self.interaction_graph, RadiusGraph) and not is_tracing():
            edge_index = self.interaction_graph(pos, batch, batch_size=size)
        else:
            edge_index = self.interaction_graph(pos, batch)
            if not is_tracing():  # a user's graph builder: its output is checked
                check_edge_index(edge_index, pos.size(0), "the interaction_graph's edge_index")
        edge_features = self.edge_embedding(pos, edge_index)

        h = self.embedding(z)
        attrs = h if self.element_dependent else None
        c = self.hidden_channels
        weights: List[Optional[Tensor]] = [None] * self.num_layers
        # On a GPU, where a step costs what its kernel launches cost, radial MLPs
        # of one shape run as one set of kernels. On a CPU the extra copies
        # this takes (stacking the weights' gradients) cost more than the
        # calls it saves, so there every layer runs its own.
        groups = self._radial_groups if pos.is_cuda or STACK_RADIAL_ON_CPU else []
        for group in groups:
            stacked = stacked_radial_weights([self.convs[t].radial for t in group],
                                             edge_features.basis)
            for t, weight in zip(group, stacked):
                weights[t] = weight
        for conv, gate, weight in zip(self.convs, self.gates, weights):
            out = gate(conv.convolve(h, edge_index, edge_features, weight, attrs))
            if not self.residual:
                h = out
            elif out.shape == h.shape:
                h = out + h
            else:
                h = torch.cat([out[:, :c] + h[:, :c], out[:, c:]], dim=-1)

        h, rest = (h, None) if h.size(-1) == c else (h[:, :c], h[:, c:])
        parts = [h]
        if self.many_body is not None:
            parts.append(self.many_body(z, pos, batch))
        if extra_features is not None:
            parts.append(extra_features)
        a = self.atom_mlp(torch.cat(parts, dim=-1) if len(parts) > 1 else h)
        return a, edge_index, rest

    def _scale_shift(self, y: Tensor) -> Tensor:
        # sigma * y + mu, without the two kernels when they are 1 and 0.
        if self.std != 1.0:
            y = y * self.std
        return y + self.mean if self.mean != 0.0 else y

    @staticmethod
    def _num_graphs(batch: Optional[Tensor], num_atoms: int) -> int:
        if num_atoms == 0:
            return 0
        return int(batch.max()) + 1 if batch is not None else 1

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(hidden_irreps={self.hidden_irreps}, "
                f"num_layers={self.num_layers}, cutoff={self.cutoff}, lmax={self.lmax}, "
                f"pooling={self.pooling!r}, readout={self.readout!r})")


def _hidden_irreps(hidden_channels: int, hidden_irreps: Optional[IrrepsLike],
                   lmax: int) -> o3.Irreps:
    """The checked irreps between layers (default: the scalars alone)."""
    scalars = o3.Irreps(f"{hidden_channels}x0e")
    hidden = scalars if hidden_irreps is None else as_irreps(hidden_irreps, "hidden_irreps")
    hidden = hidden.simplify()
    if hidden[0] != scalars[0]:
        raise ValueError(
            f"'hidden_irreps' must start with {hidden_channels}x0e, the hidden scalars "
            f"(got {hidden})")
    if hidden.lmax > lmax:
        raise ValueError(f"'hidden_irreps' {hidden} exceeds lmax={lmax}")
    return hidden


def _padded_atomref(atomref, out_channels: int) -> Tensor:
    """:obj:`atomref` checked and padded to :obj:`[MAX_ATOMIC_NUMBER + 1, out_channels]`."""
    atomref = torch.as_tensor(atomref, dtype=torch.get_default_dtype())
    if atomref.dim() == 1:
        atomref = atomref.unsqueeze(-1)
    if (atomref.dim() != 2 or atomref.size(0) > MAX_ATOMIC_NUMBER + 1
            or atomref.size(1) not in (1, out_channels)):
        raise ValueError(
            f"'atomref' must have shape [K] or [K, {out_channels}] with "
            f"K <= {MAX_ATOMIC_NUMBER + 1}, indexed by atomic number "
            f"(got {list(atomref.shape)})")
    padded = atomref.new_zeros(MAX_ATOMIC_NUMBER + 1, out_channels)
    padded[:atomref.size(0)] = atomref
    return padded
