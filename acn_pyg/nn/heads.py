r"""Output heads for atomic and tensorial properties, read from the atom
features of an :class:`~acn_pyg.nn.AtomCloudConv` stack: scalars
:math:`\mathbf{a}_i` (invariant) and, for the vector and tensor heads, the
last layer's :obj:`1o` or :obj:`2e` features :math:`\mathbf{v}_i`
(equivariant). Each is usable on its own in a user's PyG model."""
from typing import Optional

import torch
from e3nn.io import CartesianTensor
from torch import Tensor
from torch_geometric.utils import scatter

from acn_pyg.nn.irreps_linear import IrrepsLinear
from acn_pyg.nn.normalized import NormalizedLinear
from acn_pyg.utils.irreps import IrrepsLike, as_irreps


def _mlp(channels: int, weight_norm: bool) -> torch.nn.Sequential:
    linear = NormalizedLinear if weight_norm else torch.nn.Linear
    return torch.nn.Sequential(linear(channels, channels // 2), torch.nn.SiLU(),
                               linear(channels // 2, 1))


def total_charge_correction(q: Tensor, batch: Tensor, num_graphs: int,
                            total_charge: Optional[Tensor] = None) -> Tensor:
    r"""Shifts per-atom charges so that each structure's sum is its total
    charge, spreading the excess evenly over its atoms:
    :math:`q_i \leftarrow q_i - \frac{1}{n_g} \left( \sum_{j \in g} q_j - Q_g \right)`.

    Args:
        q (torch.Tensor): Charges, :obj:`[num_atoms, 1]`.
        batch (torch.Tensor): Structure of every atom.
        num_graphs (int): Number of structures.
        total_charge (torch.Tensor, optional): :math:`Q_g`, :obj:`[num_graphs]`.
            (default: :obj:`None`, neutral)
    """
    excess = scatter(q, batch, 0, dim_size=num_graphs, reduce="mean")
    if total_charge is not None:
        count = torch.bincount(batch, minlength=num_graphs).to(q.dtype).clamp(min=1)
        excess = excess - (total_charge.to(q.dtype) / count).view(-1, 1)
    return q - excess.index_select(0, batch)


class AtomicChargesHead(torch.nn.Module):
    r"""Per-atom scalars from invariant atom features,
    :math:`q_i = \sigma\, \mathrm{MLP}(\mathbf{a}_i) + q^\mathrm{ref}_{z_i}`,
    optionally shifted to sum to each structure's total charge
    (:func:`total_charge_correction`).

    Args:
        channels (int): Size of :math:`\mathbf{a}_i`.
        constrain (bool, optional): Make the charges sum to the total charge.
            (default: :obj:`True`)
        std (float, optional): :math:`\sigma`. (default: :obj:`1.0`)
        atomref (torch.Tensor, optional): :math:`q^\mathrm{ref}` per atomic
            number, :obj:`[K]`. (default: :obj:`None`)
        weight_norm (bool, optional): If :obj:`True`, the weight matrices
            are weight-normalised (:class:`~acn_pyg.nn.normalized.NormalizedLinear`,
            :class:`~acn_pyg.nn.IrrepsLinear`'s :obj:`weight_norm`), initialised
            to the same function. (default: :obj:`False`)

    Shapes:
        - **input:** :math:`(|\mathcal{V}|, \mathrm{channels})`, atomic
          numbers and batch :math:`(|\mathcal{V}|)`, total charge
          :math:`(|\mathcal{G}|)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, 1)`
    """

    def __init__(self, channels: int, constrain: bool = True, std: float = 1.0,
                 atomref: Optional[Tensor] = None, weight_norm: bool = False):
        super().__init__()
        self.constrain, self.std = constrain, float(std)
        self.mlp = _mlp(channels, weight_norm)
        ref = torch.zeros(101) if atomref is None else torch.as_tensor(
            atomref, dtype=torch.get_default_dtype()).view(-1)
        self.register_buffer("atomref", torch.nn.functional.pad(ref, (0, 101 - ref.numel())))

    def forward(self, a: Tensor, z: Tensor, batch: Tensor, num_graphs: int,
                total_charge: Optional[Tensor] = None) -> Tensor:
        q = self.std * self.mlp(a) + self.atomref.index_select(0, z).unsqueeze(-1)
        if self.constrain:
            q = total_charge_correction(q, batch, num_graphs, total_charge)
        return q


class DipoleHead(torch.nn.Module):
    r"""A molecular dipole vector from atomic charges and atomic dipoles,
    as in PaiNN and MACE's AtomicDipolesMACE:

    .. math::
        \boldsymbol{\mu} = \sigma \left( \sum_i q_i (\mathbf{r}_i - \mathbf{r}_c)
        + \sum_i \mathbf{W} \mathbf{v}_i \right)

    with charges :math:`q_i` of an :class:`AtomicChargesHead` (summing to the
    total charge), atomic dipoles from the :obj:`1o` features
    :math:`\mathbf{v}_i` by an equivariant linear map, and
    :math:`\mathbf{r}_c` the structure's centre of mass (the dipole of a
    charged structure depends on its origin). It rotates with the structure
    (:math:`\boldsymbol{\mu}(R\mathbf{r}) = R \boldsymbol{\mu}(\mathbf{r})`),
    and reflects with it.

    Args:
        channels (int): Size of the scalar features :math:`\mathbf{a}_i`.
        vector_irreps (str or e3nn.o3.Irreps): Irreps of :math:`\mathbf{v}_i`
            (:obj:`"Cx1o"`), or :obj:`None` for charges alone.
        std (float, optional): :math:`\sigma`, e.g. a unit conversion from
            e*A. (default: :obj:`1.0`)
        constrain (bool, optional): Make the charges sum to the total charge.
            (default: :obj:`True`)
        weight_norm (bool, optional): If :obj:`True`, the weight matrices
            are weight-normalised (:class:`~acn_pyg.nn.normalized.NormalizedLinear`,
            :class:`~acn_pyg.nn.IrrepsLinear`'s :obj:`weight_norm`), initialised
            to the same function. (default: :obj:`False`)

    Shapes:
        - **input:** :math:`\mathbf{a}` :math:`(|\mathcal{V}|, \mathrm{channels})`,
          :math:`\mathbf{v}` :math:`(|\mathcal{V}|, 3C)`, atomic numbers,
          positions :math:`(|\mathcal{V}|, 3)`, batch, total charge
          :math:`(|\mathcal{G}|)` *(optional)*
        - **output:** :math:`(|\mathcal{G}|, 3)`
    """

    def __init__(self, channels: int, vector_irreps: Optional[IrrepsLike], std: float = 1.0,
                 constrain: bool = True, weight_norm: bool = False):
        super().__init__()
        from ase.data import atomic_masses
        self.std = float(std)
        self.charges = AtomicChargesHead(channels, constrain=constrain, weight_norm=weight_norm)
        self.atomic = (IrrepsLinear(str(as_irreps(vector_irreps)), "1x1o",
                                    weight_norm=weight_norm)
                       if vector_irreps is not None else None)
        self.register_buffer("masses", torch.as_tensor(atomic_masses[:101],
                                                       dtype=torch.get_default_dtype()))

    def forward(self, a: Tensor, v: Optional[Tensor], z: Tensor, pos: Tensor, batch: Tensor,
                num_graphs: int, total_charge: Optional[Tensor] = None) -> Tensor:
        q = self.charges(a, z, batch, num_graphs, total_charge)
        m = self.masses.index_select(0, z).unsqueeze(-1).to(pos.dtype)
        center = (scatter(m * pos, batch, 0, dim_size=num_graphs, reduce="sum")
                  / scatter(m, batch, 0, dim_size=num_graphs, reduce="sum"))
        per_atom = q * (pos - center.index_select(0, batch))
        if self.atomic is not None:
            per_atom = per_atom + self.atomic(v)
        return self.std * scatter(per_atom, batch, 0, dim_size=num_graphs, reduce="sum")


class SymmetricTensorHead(torch.nn.Module):
    r"""A symmetric 3x3 molecular tensor (a polarizability) as a sum of
    atomic tensors, each an isotropic part from the scalars and a
    traceless part from the :obj:`2e` features:

    .. math::
        \mathbf{A} = \sum_i \left( (\sigma\, \mathrm{MLP}(\mathbf{a}_i)
        + \alpha^\mathrm{ref}_{z_i}) \mathbf{I}
        + \sigma_2\, \mathcal{C}(\mathbf{W} \mathbf{v}_i) \right)

    where :math:`\mathcal{C}` maps the five :obj:`2e` components to a
    symmetric traceless matrix (e3nn's :class:`~e3nn.io.CartesianTensor`
    ``"ij=ji"``). It transforms as :math:`R \mathbf{A} R^\top` under
    rotations and reflections; its trace is :math:`3 \sum_i (\ldots)`, the
    isotropic part alone.

    Args:
        channels (int): Size of :math:`\mathbf{a}_i`.
        tensor_irreps (str or e3nn.o3.Irreps): Irreps of :math:`\mathbf{v}_i`
            (:obj:`"Cx2e"`).
        std (float, optional): :math:`\sigma`, the scale of the isotropic
            part. (default: :obj:`1.0`)
        atomref (torch.Tensor, optional): Isotropic value per atomic number,
            :math:`\alpha^\mathrm{ref}`, :obj:`[K]`. (default: :obj:`None`)
        anisotropic_std (float, optional): :math:`\sigma_2`, the scale of the
            traceless part (for a polarizability often several times
            :math:`\sigma`). (default: :obj:`None`, :math:`\sigma`)
        weight_norm (bool, optional): If :obj:`True`, the weight matrices
            are weight-normalised (:class:`~acn_pyg.nn.normalized.NormalizedLinear`,
            :class:`~acn_pyg.nn.IrrepsLinear`'s :obj:`weight_norm`), initialised
            to the same function. (default: :obj:`False`)
        anisotropic_gradient (float, optional): :math:`g`, the factor on the
            gradient that the traceless part passes back into
            :math:`\mathbf{v}_i` (the output is unchanged:
            :math:`g \mathbf{v} + (1 - g)\,\mathrm{sg}(\mathbf{v})`). Under
            Adam, which normalises each parameter's steps, the parameters
            that only the traceless part uses (this head's :math:`\mathbf{W}`,
            the last layer's :obj:`2e` block) learn as with :math:`g = 1`,
            while the layers shared with the isotropic part feel :math:`g`
            times its pull. (default: :obj:`1.0`)

    Shapes:
        - **input:** :math:`(|\mathcal{V}|, \mathrm{channels})`,
          :math:`(|\mathcal{V}|, 5C)`, atomic numbers, batch
        - **output:** :math:`(|\mathcal{G}|, 3, 3)`
    """

    def __init__(self, channels: int, tensor_irreps: IrrepsLike, std: float = 1.0,
                 atomref: Optional[Tensor] = None, anisotropic_std: Optional[float] = None,
                 weight_norm: bool = False, anisotropic_gradient: float = 1.0):
        super().__init__()
        if not 0.0 <= float(anisotropic_gradient) <= 1.0:
            raise ValueError(f"'anisotropic_gradient' must be in [0, 1] "
                             f"(got {anisotropic_gradient!r})")
        self.anisotropic_gradient = float(anisotropic_gradient)
        self.std = float(std)
        self.anisotropic_std = self.std if anisotropic_std is None else float(anisotropic_std)
        self.isotropic = _mlp(channels, weight_norm)
        self.anisotropic = IrrepsLinear(str(as_irreps(tensor_irreps)), "1x2e",
                                        weight_norm=weight_norm)
        basis = CartesianTensor("ij=ji")  # 0e + 2e
        to_cartesian = basis.to_cartesian(torch.eye(6, dtype=torch.float64))
        self.register_buffer("traceless", to_cartesian[1:].to(torch.get_default_dtype()))
        ref = torch.zeros(101) if atomref is None else torch.as_tensor(
            atomref, dtype=torch.get_default_dtype()).view(-1)
        self.register_buffer("atomref", torch.nn.functional.pad(ref, (0, 101 - ref.numel())))

    def forward(self, a: Tensor, v: Tensor, z: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        iso = self.std * self.isotropic(a) + self.atomref.index_select(0, z).unsqueeze(-1)
        g = self.anisotropic_gradient
        if g != 1.0 and torch.is_grad_enabled():
            v = g * v + (1.0 - g) * v.detach()
        aniso = torch.einsum("nk,kij->nij", self.anisotropic_std * self.anisotropic(v),
                             self.traceless)
        eye = torch.eye(3, dtype=a.dtype, device=a.device)
        per_atom = iso.unsqueeze(-1) * eye + aniso
        return scatter(per_atom, batch, 0, dim_size=num_graphs, reduce="sum")
