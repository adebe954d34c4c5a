import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from e3nn import o3
from torch import Tensor
from torch_geometric.nn import MessagePassing

from acn_pyg.graph import radius_graph
from acn_pyg.nn.conv.symmetric_product import ElementFactors, SymmetricProduct
from acn_pyg.nn.conv.tensor_product import ChannelwiseTensorProduct
from acn_pyg.nn.element_linear import ElementLinear
from acn_pyg.nn.embedding import EdgeEmbedding, EdgeFeatures
from acn_pyg.nn.irreps_linear import IrrepsLinear
from acn_pyg.nn.radial_mlp import RadialMLP
from acn_pyg.utils.checks import (check_batch, check_edge_index, check_features,
                                  check_matches_module, check_pos, check_same_device,
                                  is_tracing, layout_version)
from acn_pyg.utils.irreps import IrrepsLike, as_irreps, split_blocks

_SCALAR = o3.Irrep("0e")


class AtomCloudConv(MessagePassing):
    r"""The atom-cloud convolution of AtomCloudNet: each atom :math:`i` looks at
    the cloud of atoms :math:`j` within the cutoff, projects their features on
    spherical harmonics of the direction :math:`\hat{\mathbf{r}}_{ij}` and
    turns the resulting cloud density into new features:

    .. math::
        \mathbf{A}_i = \frac{1}{\bar{n}} \sum_{j \in \mathcal{N}(i)}
        \left( \mathrm{MLP}(\mathbf{e}(r_{ij}))\, f_\mathrm{cut}(r_{ij}) \right)
        \odot \left( \mathbf{x}_j \otimes Y(\hat{\mathbf{r}}_{ij}) \right)

    .. math::
        \mathbf{x}'_i = \mathbf{W}_\mathrm{out} \left[ \mathbf{A}_i \,\Big|\,
        \tfrac{1}{2l+1} \textstyle\sum_m A_{i,um}^{(l)\,2} \,\Big|\,
        \mathbf{B}_i \right] + \mathbf{W}_\mathrm{self}\, \mathbf{x}_i

    with :math:`\otimes` the channel-wise e3nn tensor product
    (:class:`~acn_pyg.nn.conv.tensor_product.ChannelwiseTensorProduct`),
    :math:`\mathbf{e}` a Bessel radial basis, :math:`f_\mathrm{cut}` a smooth
    polynomial envelope (value and derivatives zero at the cutoff),
    :math:`\bar{n}` the average number of neighbours and
    :math:`\mathbf{W}` equivariant linear maps, computed as one product over
    the concatenation (each part normalised by its own fan-in)
    (:class:`~acn_pyg.nn.IrrepsLinear`). The power-spectrum term
    :math:`\sum_m A^2` (a three-body invariant, as in SOAP) feeds the scalar
    outputs with the angular structure of the cloud; the optional products
    :math:`\mathbf{B}_i` of the cloud with itself
    (:class:`~acn_pyg.nn.conv.SymmetricProduct`, :obj:`product_channels`)
    feed every output irrep with it. Scalar (:obj:`0e`)
    outputs are invariant to rotations, reflections and translations;
    :math:`l > 0` outputs are equivariant.

    Args:
        in_irreps (int, str or e3nn.o3.Irreps): Irreps of the input features;
            an int :obj:`n` means :obj:`n` scalars (:obj:`"nx0e"`).
        out_irreps (int, str or e3nn.o3.Irreps): Irreps of the output features.
        cutoff (float, optional): Cutoff radius of the cloud in Angstrom.
            (default: :obj:`5.0`)
        lmax (int, optional): Largest degree of the spherical harmonics and of
            the intermediate irreps. (default: :obj:`2`)
        num_basis (int, optional): Number of radial basis functions.
            (default: :obj:`8`)
        radial_hidden (int, optional): Hidden width of the radial MLP.
            (default: :obj:`64`)
        max_num_neighbors (int, optional): If set, each atom keeps only its
            nearest :obj:`max_num_neighbors` neighbours when the layer builds
            its own graph. (default: :obj:`None`, no limit)
        avg_num_neighbors (float, optional): The normaliser :math:`\bar{n}`;
            a constant, so a molecule gives the same output alone or in a
            batch. (default: :obj:`16.0`)
        power_spectrum (bool, optional): If :obj:`True`, the invariants
            :math:`\sum_m A^2` feed the scalar outputs. (default: :obj:`True`)
        product_channels (int, optional): If positive, the products of the
            cloud with itself, :math:`\mathbf{B}_i` of
            :class:`~acn_pyg.nn.conv.SymmetricProduct` with this many channels
            per irrep, join :math:`\mathbf{W}_\mathrm{out}`'s input: every
            output irrep, not only the scalars, sees pairs of neighbours.
            (default: :obj:`0`, off)
        radial_gain (float, optional): Constant factor on the radial MLP's
            output (:class:`~acn_pyg.nn.RadialMLP`'s :obj:`gain`). With
            PyTorch's default initialisation of the MLP, the default makes
            the per-edge weights start at about unit scale, as in e3nn's
            normalised networks, so that the cloud starts near the scale of
            the self-interaction instead of ~50x below it and the model uses
            geometry from its first steps at any learning rate.
            (default: :obj:`10.0`)
        weight_norm (bool, optional): If :obj:`True`, the radial MLP's and
            :math:`\mathbf{W}`'s weights are weight-normalised
            (:func:`~acn_pyg.nn.normalized.weight_normalized`), initialised
            to the same function: Adam's steps then turn them at a rate that
            depends little on the learning rate, so the layer trains alike
            from :math:`3 \cdot 10^{-4}` to :math:`3 \cdot 10^{-3}`.
            (default: :obj:`True`)
        product_correlation (int, optional): The most cloud factors in a
            product (:class:`~acn_pyg.nn.conv.SymmetricProduct`'s
            :obj:`correlation`): :obj:`2` (pairs of neighbours) or :obj:`3`
            (triples too). (default: :obj:`2`)
        attr_channels (int, optional): If positive, the layer's weights depend
            on atom attributes :math:`\mathbf{s}_i` of this size given to
            :meth:`forward` (e.g. the element embedding): the products' paths
            are weighted by :math:`1 + \mathbf{V}\mathbf{s}_i` and the
            self-interaction reads :math:`\mathbf{x}_i \odot (1 +
            \mathbf{U}\mathbf{s}_i)` (one factor per channel), with
            :math:`\mathbf{U}, \mathbf{V}` starting at zero.
            (default: :obj:`0`, off)
        product_basis (bool, optional): If :obj:`True`, the layer is MACE's
            product basis: :math:`\mathbf{x}'_i = \mathbf{W}_\mathrm{out}
            \bar{\mathbf{B}}_i + \mathbf{W}_\mathrm{self}\, \mathbf{x}_i`, with
            :math:`\bar{\mathbf{B}}_i` the products contracted per channel and
            output irrep (:class:`~acn_pyg.nn.conv.SymmetricProduct`'s
            :obj:`contract`, the cloud itself one of its terms); the cloud
            and the power spectrum reach :math:`\mathbf{W}_\mathrm{out}` only
            through them. Needs :obj:`product_channels > 0`.
            (default: :obj:`False`)
        input_linear (bool, optional): If :obj:`True`, the neighbours'
            features are mixed by an equivariant linear map before they enter
            the cloud, :math:`\mathbf{x}_j \to \mathbf{W}_\mathrm{in}\mathbf{x}_j`
            (MACE's :obj:`linear_up`), so that each channel's radial weights
            act on a learned mixture of the input channels.
            (default: :obj:`False`)
        self_interaction_rank (int, optional): If positive, the
            self-interaction's matrix depends on the atom attributes too:
            :math:`\mathbf{W}_\mathrm{self} + \sum_k (\mathbf{P}\mathbf{s}_i)_k
            \mathbf{W}_k` with this many :math:`\mathbf{W}_k`
            (:class:`~acn_pyg.nn.ElementLinear`), as MACE's element-dependent
            skip connection. Needs :obj:`attr_channels > 0`.
            (default: :obj:`0`, off)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, \dim(\mathrm{in}))`,
          positions :math:`(|\mathcal{V}|, 3)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*, edge indices
          :math:`(2, |\mathcal{E}|)` *(optional)*, atom attributes
          :math:`(|\mathcal{V}|, \mathrm{attr\_channels})` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, \dim(\mathrm{out}))`
    """

    def __init__(
        self,
        in_irreps: IrrepsLike,
        out_irreps: IrrepsLike,
        cutoff: float = 5.0,
        lmax: int = 2,
        num_basis: int = 8,
        radial_hidden: int = 64,
        max_num_neighbors: Optional[int] = None,
        avg_num_neighbors: float = 16.0,
        power_spectrum: bool = True,
        product_channels: int = 0,
        radial_gain: float = 10.0,
        weight_norm: bool = True,
        product_correlation: int = 2,
        attr_channels: int = 0,
        product_basis: bool = False,
        input_linear: bool = False,
        self_interaction_rank: int = 0,
    ):
        super().__init__(aggr="add", node_dim=0)
        if not cutoff > 0:
            raise ValueError(f"'cutoff' must be positive (got {cutoff})")
        if not (isinstance(lmax, int) and lmax >= 0):
            raise ValueError(f"'lmax' must be a non-negative int (got {lmax!r})")
        if not (isinstance(product_channels, int) and product_channels >= 0):
            raise ValueError(
                f"'product_channels' must be a non-negative int (got {product_channels!r})")
        if not avg_num_neighbors > 0:
            raise ValueError(f"'avg_num_neighbors' must be positive (got {avg_num_neighbors})")
        self.in_irreps = as_irreps(in_irreps, "in_irreps")
        self.out_irreps = as_irreps(out_irreps, "out_irreps")
        self.cutoff = float(cutoff)
        self.lmax = lmax
        self.num_basis = num_basis
        self.radial_hidden = radial_hidden
        self.max_num_neighbors = max_num_neighbors
        self.avg_num_neighbors = float(avg_num_neighbors)
        if product_basis and not (isinstance(product_channels, int) and product_channels > 0):
            raise ValueError(f"'product_basis=True' needs the products: set 'product_channels' "
                             f"> 0 (got {product_channels!r})")
        self.product_basis = bool(product_basis)
        self.power_spectrum = (power_spectrum and not self.product_basis
                               and _SCALAR in [ir for _, ir in self.out_irreps])

        self.edge_embedding = EdgeEmbedding(cutoff, lmax, num_basis)
        out_irs = {ir for _, ir in self.out_irreps}
        self.tensor_product = ChannelwiseTensorProduct(
            self.in_irreps, lmax,
            filter_ir_out=None if self.power_spectrum or product_channels else sorted(out_irs),
            scale=1.0 / self.avg_num_neighbors, sort_output=True)
        # One block per irrep: each is one slice for the spectrum and the linear.
        cloud_irreps = self.tensor_product.irreps_out.simplify()
        self._cloud_dims = [mul * ir.dim for mul, ir in cloud_irreps]
        # (cloud block, mul, dim) of every block that feeds the power spectrum.
        self._spectrum_blocks: List[Tuple[int, int, int]] = [
            (b, mul, ir.dim) for b, (mul, ir) in enumerate(cloud_irreps)
            if self.power_spectrum and ir != _SCALAR]
        spectrum_irreps = [o3.Irreps(f"{mul}x0e") for _, mul, _ in self._spectrum_blocks]
        self.product_channels = product_channels
        if product_correlation not in (2, 3):
            raise ValueError(f"'product_correlation' must be 2 or 3 (got {product_correlation!r})")
        if product_correlation != 2 and product_channels == 0:
            raise ValueError(f"'product_correlation={product_correlation}' needs the products: "
                             f"set 'product_channels' > 0")
        if not (isinstance(attr_channels, int) and attr_channels >= 0):
            raise ValueError(
                f"'attr_channels' must be a non-negative int (got {attr_channels!r})")
        self.attr_channels = attr_channels
        self.product = (SymmetricProduct(cloud_irreps, product_channels,
                                         filter_ir_out=sorted(out_irs),
                                         correlation=product_correlation,
                                         attr_channels=attr_channels,
                                         contract=self.product_basis)
                        if product_channels > 0 else None)
        # Element-dependent self-interaction: W_self (x * (1 + U s)), U from zero.
        self.self_weights = (ElementFactors(attr_channels, self.in_irreps.num_irreps)
                             if attr_channels > 0 else None)
        # Every component of x -> its channel (the index into U s).
        channel_of = [c for c, d in enumerate(ir.dim for mul, ir in self.in_irreps
                                              for _ in range(mul)) for _ in range(d)]
        self.register_buffer("_channel_of_column", torch.tensor(channel_of, dtype=torch.long)
                             if attr_channels > 0 else None, persistent=False)
        product_irreps = [self.product.irreps_out] if self.product is not None else []
        cloud_blocks = ([] if self.product_basis
                        else [o3.Irreps([block]) for block in cloud_irreps])
        lin_in = sum(spectrum_irreps + product_irreps + cloud_blocks, o3.Irreps(""))
        reachable = {ir for _, ir in lin_in} | {ir for _, ir in self.in_irreps}
        missing = sorted(out_irs - reachable)
        if missing:
            raise ValueError(
                f"'out_irreps' asks for {' '.join(map(str, missing))}, which neither the cloud "
                f"tensor product of {self.in_irreps} with Y up to lmax={lmax} nor the input holds")
        if not (isinstance(self_interaction_rank, int) and self_interaction_rank >= 0):
            raise ValueError(f"'self_interaction_rank' must be a non-negative int "
                             f"(got {self_interaction_rank!r})")
        if self_interaction_rank > 0 and attr_channels == 0:
            raise ValueError("'self_interaction_rank' > 0 needs the atom attributes: set "
                             "'attr_channels' > 0")
        self.self_mix = (ElementLinear(attr_channels, self_interaction_rank, self.in_irreps,
                                       self.out_irreps, weight_norm=weight_norm)
                         if self_interaction_rank > 0 else None)
        self.input_linear = (IrrepsLinear(str(self.in_irreps), self.in_irreps, bias=False,
                                          weight_norm=weight_norm) if input_linear else None)
        self.radial = RadialMLP(num_basis, radial_hidden, self.tensor_product.weight_numel,
                                gain=radial_gain, weight_norm=weight_norm)
        # W_out [A | spectrum] + W_self x as one product over the concatenation,
        # each part normalised by its own fan-in.
        self.linear = IrrepsLinear(cloud_blocks + spectrum_irreps + product_irreps
                                   + [self.in_irreps], self.out_irreps,
                                   fan_in_groups=[0] * (len(cloud_blocks) + len(spectrum_irreps))
                                   + [2] * len(product_irreps) + [1],
                                   weight_norm=weight_norm)
        self.reset_parameters()

    #: Layout of the state dict, saved in its metadata (fused output and
    #: self-interaction linear, cloud blocks grouped by irrep). A state dict
    #: without it carries PyTorch's default 1, which cannot tell this layout
    #: from an older ordering of the same tensors, so loading one warns.
    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        if any(key.startswith(prefix + "self_interaction.") for key in state_dict):
            raise ValueError(
                f"'{prefix}self_interaction.*' is in this state dict: it was saved by "
                f"acn_pyg 0.1, whose AtomCloudConv kept the self-interaction apart and laid "
                f"out its weights differently; acn_pyg >= 0.2 cannot load it. Retrain, or "
                f"load it with acn_pyg 0.1.")
        version = layout_version(local_metadata, self._version, prefix, "AtomCloudConv")
        if version is not None and version < self._version:
            warnings.warn(
                f"the state dict of '{prefix or 'AtomCloudConv'}' was saved before acn_pyg "
                f"0.2.1 (layout version {version}): it loads correctly if it was saved by "
                f"acn_pyg 0.2.0, but a development version between 0.1 and 0.2.0 ordered the "
                f"same tensors differently and its weights would land in the wrong places. "
                f"Check the loaded model's error, or save it again with this version to mark it.",
                UserWarning, stacklevel=2)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.edge_embedding.reset_parameters()
        self.radial.reset_parameters()
        if self.input_linear is not None:
            self.input_linear.reset_parameters()
        if self.product is not None:
            self.product.reset_parameters()
        if self.self_weights is not None:
            self.self_weights.reset_parameters()
        self.linear.reset_parameters()
        if self.self_mix is not None:
            self.self_mix.reset_parameters()

    def forward(
        self,
        x: Tensor,
        pos: Tensor,
        batch: Optional[Tensor] = None,
        edge_index: Optional[Tensor] = None,
        edge_features: Optional[EdgeFeatures] = None,
        attrs: Optional[Tensor] = None,
    ) -> Tensor:
        r"""
        Args:
            x (torch.Tensor): Node features.
            pos (torch.Tensor): Atom positions in Angstrom.
            batch (torch.Tensor, optional): Graph index of every atom.
            edge_index (torch.Tensor, optional): Edges :math:`j \to i`; the
                radius graph is built when :obj:`None`.
            edge_features (EdgeFeatures, optional): Precomputed edge embedding
                (a model shares one across its layers); computed when
                :obj:`None`.
            attrs (torch.Tensor, optional): Atom attributes
                :math:`\mathbf{s}_i`, :obj:`[num_atoms, attr_channels]`;
                required when :obj:`attr_channels > 0`.
        """
        num_atoms = pos.size(0)
        if not is_tracing():
            check_same_device(x=x, pos=pos, batch=batch, edge_index=edge_index)
            check_matches_module(self, x=x, pos=pos)
            check_pos(pos)
            check_features(x, num_atoms, self.in_irreps.dim)
            check_batch(batch, num_atoms)
            if edge_index is not None:
                check_edge_index(edge_index, num_atoms)
            if self.attr_channels > 0:
                if attrs is None:
                    raise ValueError(f"'attrs' of shape [{num_atoms}, {self.attr_channels}] "
                                     f"is required (attr_channels={self.attr_channels})")
                check_features(attrs, num_atoms, self.attr_channels, "attrs")
            elif attrs is not None:
                raise ValueError("'attrs' was given but the layer was built with "
                                 "attr_channels=0")
        if edge_index is None:
            edge_index = radius_graph(pos, self.cutoff, batch,
                                      max_num_neighbors=self.max_num_neighbors)
        if edge_features is None:
            edge_features = self.edge_embedding(pos, edge_index)
        return self.convolve(x, edge_index, edge_features, attrs=attrs)

    def convolve(self, x: Tensor, edge_index: Tensor, edge_features: EdgeFeatures,
                 weight: Optional[Tensor] = None, attrs: Optional[Tensor] = None) -> Tensor:
        r"""The convolution proper, on trusted inputs: a model that checked its
        inputs once and shares :obj:`edge_features` across layers calls this.
        :obj:`weight` is this layer's :math:`\mathrm{MLP}(\mathbf{e})` if
        precomputed (:func:`~acn_pyg.nn.stacked_radial_weights`); the
        envelope :math:`f_\mathrm{cut}` comes with the harmonics of
        :obj:`edge_features`."""
        if self.attr_channels > 0 and attrs is None:
            raise ValueError(f"this AtomCloudConv has element-dependent weights "
                             f"(attr_channels={self.attr_channels}): pass 'attrs'")
        if weight is None:
            weight = self.radial(edge_features.basis)  # the envelope is in sh_dense
        source = x if self.input_linear is None else self.input_linear(x)
        cloud = self.propagate(edge_index, x=source, weight=weight, neighbors=edge_features,
                               size=(x.size(0), x.size(0)))
        # One block per irrep, cut by one split (its backward is one cat).
        blocks = ([] if self.product_basis
                  else split_blocks(cloud, self._cloud_dims, dim=1))
        spectrum = [blocks[b].reshape(-1, m, d).pow(2).mean(dim=-1)
                    for b, m, d in self._spectrum_blocks]
        products = [self.product(cloud, attrs)] if self.product is not None else []
        if self.self_weights is not None:
            scale = self.self_weights(attrs)
            x = x * (scale if x.size(-1) == scale.size(-1)
                     else scale.index_select(-1, self._channel_of_column))
        # In pieces: the linear joins just the blocks each output needs.
        out = self.linear(blocks + spectrum + products + [x])
        return out if self.self_mix is None else out + self.self_mix(x, attrs)

    def linear_input_parts(self, parts: Sequence[Tensor]) -> Dict[str, List[Tensor]]:
        r"""Names the pieces of the list that :meth:`convolve` gives the output
        :obj:`linear` (a forward hook on :obj:`linear` sees it as its input):
        :obj:`"cloud"` (one block per irrep of the cloud), :obj:`"spectrum"`
        (the power spectra), :obj:`"products"` (empty without products) and
        :obj:`"input"` (the layer's input :math:`\mathbf{x}`)."""
        n_cloud = 0 if self.product_basis else len(self._cloud_dims)
        n_spec = len(self._spectrum_blocks)
        n_prod = 1 if self.product is not None else 0
        if len(parts) != n_cloud + n_spec + n_prod + 1:
            raise ValueError(f"this layer's linear takes {n_cloud + n_spec + n_prod + 1} "
                             f"pieces (got {len(parts)})")
        parts = list(parts)
        return {"cloud": parts[:n_cloud], "spectrum": parts[n_cloud:n_cloud + n_spec],
                "products": parts[n_cloud + n_spec:n_cloud + n_spec + n_prod],
                "input": parts[-1:]}

    def message(self, x_j: Tensor, weight: Tensor) -> Tensor:
        return self.tensor_product.message(x_j, weight)

    def aggregate(self, inputs: Tensor, neighbors: EdgeFeatures) -> Tensor:
        # The cloud projection: sum over neighbours of message (x) Y(r_ij).
        return self.tensor_product.aggregate(inputs, neighbors)

    def update(self, inputs: Tensor, neighbors: EdgeFeatures) -> Tensor:
        # 1 / avg_num_neighbors folded in; the atoms back in order.
        return self.tensor_product.couple(inputs, neighbors.node_order)

    def __repr__(self) -> str:
        product = (f", product_channels={self.product_channels}"
                   if self.product is not None else "")
        product += ", product_basis=True" if self.product_basis else ""
        product += ", input_linear=True" if self.input_linear is not None else ""
        if self.self_mix is not None:
            product += f", self_interaction_rank={self.self_mix.rank}"
        return (f"{self.__class__.__name__}({self.in_irreps}, {self.out_irreps}, "
                f"cutoff={self.cutoff}, lmax={self.lmax}{product})")
