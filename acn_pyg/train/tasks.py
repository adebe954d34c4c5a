r"""What a run learns and how it is scored: one QM9 property per molecule
(:class:`PropertyTask`), or the energies and forces of structures read from
a file (:class:`EnergyForcesTask`). The loop calls :meth:`loss` on each batch
and :meth:`validate` after each validated epoch. In a distributed run their
predictions are gathered over the ranks (every rank gets the whole, in
order)."""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from acn_pyg.train import distributed
from acn_pyg.train.loop import evaluate
from acn_pyg.train.losses import target_loss


class PropertyTask:
    r"""One column :obj:`column` of :obj:`data.y`, learned with
    :func:`~acn_pyg.train.target_loss` (MAE in units of :obj:`std`) and
    validated by its MAE."""

    def __init__(self, column: int, std: float):
        self.column, self.std = column, std

    def loss(self, model: torch.nn.Module, data) -> Tensor:
        pred = model(data.z, data.pos, data.batch).view(-1)
        return target_loss(pred, data.y[:, self.column], self.std)

    def validate(self, model: torch.nn.Module, loader, device) -> Dict[str, float]:
        return {"val_mae": evaluate(model, loader, self.column, device)}


def energy_and_forces(model: torch.nn.Module, data, forces: bool = True,
                      create_graph: bool = False) -> Tuple[Tensor, Tensor]:
    r"""The model's energy per structure :math:`E` and, with :obj:`forces`,
    the forces :math:`\mathbf{F}_i = -\partial E / \partial \mathbf{p}_i`
    (:obj:`None` otherwise); :obj:`create_graph` keeps the graph of the
    forces, for a loss on them."""
    pos = data.pos.detach().requires_grad_(True) if forces else data.pos
    energy = model(data.z, pos, data.batch).view(-1)
    if not forces:
        return energy, None
    grad, = torch.autograd.grad(energy.sum(), pos, create_graph=create_graph)
    return energy, -grad


class EnergyForcesTask:
    r"""Energies and forces, with the weighted loss of MACE in units of the
    model's scale :math:`\sigma`:

    .. math::
        \mathcal{L} = \frac{w_E}{\sigma^2} \frac{1}{|\mathcal{G}|} \sum_g
        \left( \frac{\hat{E}_g - E_g}{n_g} \right)^2
        + \frac{w_F}{\sigma^2} \frac{1}{3 |\mathcal{V}|} \sum_{i, \alpha}
        \left( \hat{F}_{i\alpha} - F_{i\alpha} \right)^2

    (:math:`n_g` atoms in structure :math:`g`; forces
    :math:`\hat{\mathbf{F}} = -\nabla \hat{E}` by autograd, so the step
    takes a double backward). Validated by the force MAE when the forces
    are learned (:math:`w_F > 0`), else by the energy MAE.

    Args:
        energy_weight (float): :math:`w_E`.
        forces_weight (float): :math:`w_F`.
        scale (float): :math:`\sigma`, in energy units.
    """

    def __init__(self, energy_weight: float, forces_weight: float, scale: float):
        self.energy_weight, self.forces_weight, self.scale = energy_weight, forces_weight, scale

    def loss(self, model: torch.nn.Module, data) -> Tensor:
        energy, forces = energy_and_forces(model, data, self.forces_weight > 0,
                                           create_graph=True)
        loss = energy.new_zeros(())
        if self.energy_weight > 0:
            per_atom = (energy - data.energy.view(-1)) / _num_atoms(data)
            loss = loss + self.energy_weight * per_atom.pow(2).mean()
        if self.forces_weight > 0:
            loss = loss + self.forces_weight * (forces - data.forces).pow(2).mean()
        return loss / self.scale ** 2

    def predict(self, model: torch.nn.Module, loader, device) -> Dict[str, Tensor]:
        """Predictions and references over :obj:`loader`, in its order, as
        float64 on the CPU: :obj:`energy`, :obj:`energy_ref`,
        :obj:`num_atoms` and, when the data hold forces, :obj:`forces` and
        :obj:`forces_ref` (one row per atom). The model is put back in
        training mode after."""
        model.eval()
        out: Dict[str, list] = {}
        for data in loader:
            data = data.to(device)
            has_forces = "forces" in data
            with torch.enable_grad():
                energy, forces = energy_and_forces(model, data, has_forces)
            parts = {"energy": energy, "num_atoms": _num_atoms(data)}
            if "energy" in data:
                parts["energy_ref"] = data.energy.view(-1)
            if has_forces:
                parts.update(forces=forces, forces_ref=data.forces)
            for key, value in parts.items():
                out.setdefault(key, []).append(value.detach())
        model.train()
        return {key: distributed.gather(torch.cat(values).double().cpu())
                for key, values in out.items()}

    def errors(self, pred: Dict[str, Tensor]) -> Dict[str, float]:
        """MAE and RMSE of the energies (per structure and per atom) and of
        the force components, from :meth:`predict`'s output."""
        errors = {}
        if "energy_ref" in pred:
            diff = pred["energy"] - pred["energy_ref"]
            errors.update(energy_mae=float(diff.abs().mean()),
                          energy_rmse=float(diff.pow(2).mean().sqrt()),
                          energy_per_atom_mae=float((diff / pred["num_atoms"]).abs().mean()))
        if "forces_ref" in pred:
            diff = pred["forces"] - pred["forces_ref"]
            errors.update(forces_mae=float(diff.abs().mean()),
                          forces_rmse=float(diff.pow(2).mean().sqrt()))
        return errors

    def validate(self, model: torch.nn.Module, loader, device) -> Dict[str, float]:
        errors = self.errors(self.predict(model, loader, device))
        return _scores(errors, "forces_mae" if self.forces_weight > 0 else "energy_mae")


def _scores(errors: Dict[str, float], key: str) -> Dict[str, float]:
    """A validation's scores: ``val_mae`` (error :obj:`key`, which selects
    the best checkpoint) and every error as ``val_<name>``."""
    return {"val_mae": errors[key], **{f"val_{k}": v for k, v in errors.items()}}


def _num_atoms(data) -> Tensor:
    return torch.bincount(data.batch, minlength=data.num_graphs).to(data.pos.dtype)


class _StructuredTask:
    """A QM9 property that is not one scalar per molecule: learned with an
    L1 loss in units of :obj:`std` on what :meth:`_pairs` returns, validated
    by its MAE; :meth:`predict` and :meth:`errors` report it like
    :class:`EnergyForcesTask`."""

    #: The validation score that selects the best checkpoint.
    select = "val_mae"

    def __init__(self, std: float):
        self.std = std

    def _pairs(self, model: torch.nn.Module, data) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, data) -> Tensor:
        return target_loss(*self._pairs(model, data), self.std)

    def predict(self, model: torch.nn.Module, loader, device) -> Dict[str, Tensor]:
        """Predictions and references over :obj:`loader`, in its order
        (float64, CPU); the model is put back in training mode after."""
        model.eval()
        preds, trues = [], []
        with torch.no_grad():
            for data in loader:
                pred, true = self._pairs(model, data.to(device))
                preds.append(pred.double())
                trues.append(true.double())
        model.train()
        return {"pred": distributed.gather(torch.cat(preds).cpu()),
                "true": distributed.gather(torch.cat(trues).cpu())}

    def errors(self, pred: Dict[str, Tensor]) -> Dict[str, float]:
        diff = pred["pred"] - pred["true"]
        return {"mae": float(diff.abs().mean()), "rmse": float(diff.pow(2).mean().sqrt())}

    def validate(self, model: torch.nn.Module, loader, device) -> Dict[str, float]:
        """``val_mae`` (what selects the best checkpoint) and every error of
        :meth:`errors` as ``val_<name>``, for the run's history."""
        return _scores(self.errors(self.predict(model, loader, device)), "mae")


class ChargesTask(_StructuredTask):
    r"""Per-atom charges (QM9's Mulliken charges, e, or a file's) from a
    model with :obj:`output="charges"`, constrained to each structure's total
    charge (the sum of its reference charges): the MAE over atoms."""

    def _pairs(self, model, data):
        true = data.charges.view(-1)
        total = torch.zeros(data.num_graphs, dtype=true.dtype,
                            device=true.device).index_add_(0, data.batch, true)
        return model(data.z, data.pos, data.batch, total_charge=total).view(-1), true


class DipoleVectorTask(_StructuredTask):
    r"""Dipole vectors given in the structures' frame (a file's
    :obj:`dipole`, :obj:`[1, 3]` a structure) from a model with
    :obj:`output="dipole"`: the MAE over components; :meth:`errors` adds
    that of the magnitude."""

    def _pairs(self, model, data):
        return model(data.z, data.pos, data.batch), data.dipole.reshape(-1, 3)

    def errors(self, pred: Dict[str, Tensor]) -> Dict[str, float]:
        errors = super().errors(pred)
        errors["magnitude_mae"] = float((pred["pred"].norm(dim=-1)
                                         - pred["true"].norm(dim=-1)).abs().mean())
        return errors


class TensorTask(_StructuredTask):
    r"""A symmetric 3x3 tensor per structure (a polarizability) from a model
    with :obj:`output="tensor"`. With :obj:`frame_free` (QM9) it is learned
    and scored on its eigenvalues (the principal values, ascending): QM9's
    tensors are given in another frame than its positions (acetylene's
    largest principal axis is perpendicular to its bond in the stored
    geometry), so only rotation-invariant functions of them can be compared,
    as only the dipole's magnitude can. Otherwise (a file's tensors, in the
    frame of its positions) on its nine components. The loss is

    .. math::
        \mathcal{L} = \frac{|\hat{a} - a|}{\sigma}
        + w_B \frac{\langle |\hat{\mathbf{b}} - \mathbf{b}| \rangle}{\sigma_B}
        + w_c \frac{|c(\hat{\mathbf{b}}) - c(\mathbf{b})|}{\sigma_B},
        \qquad c(\mathbf{b}) = \frac{\sum_k b_k^3}{\sum_k b_k^2}
        = \frac{\mathrm{tr}(\mathbf{B}^3)}{\mathrm{tr}(\mathbf{B}^2)},

    averaged over structures: :math:`a = \mathrm{tr}(\mathbf{A}) / 3` is
    the isotropic part, :math:`\mathbf{b}` the principal values (or
    components) of the traceless part :math:`\mathbf{B} = \mathbf{A} - a
    \mathbf{I}` and :math:`\langle \cdot \rangle` their mean. The shape
    invariant :math:`c` (principal values only) is positive for a prolate
    tensor, negative for an oblate one and linear in the scale,
    :math:`c(s\mathbf{B}) = s\,c(\mathbf{B})`. Sorted principal values
    alone cannot tell a tensor from its negative at half the size: for
    principal values :math:`(-1, -1, 2)` the prediction :math:`s (-1, -1,
    2)` costs :math:`1` at :math:`s = -1/2` and :math:`4/3` at :math:`s = 0`,
    so a model can settle on the wrong shape for many structures. With
    :math:`w_c > 2/3` the loss falls all the way from :math:`-\mathbf{B}`
    to :math:`\mathbf{B}` for the most prolate and oblate shapes; the
    minimum stays at the reference. The best checkpoint is the one with the
    lowest validation loss (``val_objective``), since the MAE of the
    principal values (or components) weighs the isotropic part less than
    the loss does; both are recorded. :meth:`errors` adds the MAE of the
    isotropic part (QM9's :obj:`alpha`), the objective and, on principal
    values, the fraction of structures whose predicted :math:`c` has the
    sign of the reference's (``shape_sign_agreement``).

    Args:
        std (float): :math:`\sigma`, the scale of the isotropic part.
        anisotropic_std (float, optional): :math:`\sigma_B`, the scale of the
            traceless part. (default: :obj:`None`, :math:`\sigma`)
        frame_free (bool, optional): Learn on principal values (references
            in another frame than the positions). (default: :obj:`True`)
        anisotropic_weight (float, optional): :math:`w_B`. (default: :obj:`1.0`)
        shape_weight (float, optional): :math:`w_c`, used with
            :obj:`frame_free`. (default: :obj:`2.0`)
    """

    #: The validation score that selects the best checkpoint.
    select = "val_objective"

    def __init__(self, std: float, anisotropic_std: Optional[float] = None,
                 frame_free: bool = True, anisotropic_weight: float = 1.0,
                 shape_weight: float = 2.0):
        super().__init__(std)
        self.anisotropic_std = std if anisotropic_std is None else anisotropic_std
        self.frame_free = frame_free
        self.anisotropic_weight = anisotropic_weight
        self.shape_weight = shape_weight

    @staticmethod
    def _split(x: Tensor) -> Tuple[Tensor, Tensor]:
        """The isotropic part of principal values [G, 3] or components
        [G, 9], and the rest."""
        if x.size(-1) == 3:
            iso = x.mean(-1, keepdim=True)
            return iso, x - iso
        iso = x[:, [0, 4, 8]].mean(-1, keepdim=True)
        eye = torch.eye(3, dtype=x.dtype, device=x.device).reshape(1, 9)
        return iso, x - iso * eye

    @staticmethod
    def shape(rest: Tensor, eps: float = 1e-12) -> Tensor:
        r"""The shape invariant :math:`c = \sum_k \mu_k^3 / \sum_k \mu_k^2`
        of traceless principal values :obj:`rest` :obj:`[G, 3]`: :obj:`[G]`
        (zero for a zero tensor)."""
        return rest.pow(3).sum(-1) / (rest.pow(2).sum(-1) + eps)

    def _objective(self, pred: Tensor, true: Tensor) -> Tensor:
        """The loss of predictions :obj:`pred` against :obj:`true` (principal
        values or components)."""
        (iso_pred, rest_pred), (iso_true, rest_true) = self._split(pred), self._split(true)
        loss = (target_loss(iso_pred, iso_true, self.std) + self.anisotropic_weight
                * target_loss(rest_pred, rest_true, self.anisotropic_std))
        if self.frame_free and self.shape_weight > 0:
            loss = loss + self.shape_weight * target_loss(
                self.shape(rest_pred), self.shape(rest_true), self.anisotropic_std)
        return loss

    def loss(self, model: torch.nn.Module, data) -> Tensor:
        return self._objective(*self._pairs(model, data))

    def _pairs(self, model, data):
        pred = model(data.z, data.pos, data.batch)
        true = data.polarizability.reshape(-1, 3, 3).to(pred.dtype)
        if self.frame_free:
            return torch.linalg.eigvalsh(pred), torch.linalg.eigvalsh(true)
        return pred.reshape(-1, 9), true.reshape(-1, 9)

    def errors(self, pred: Dict[str, Tensor]) -> Dict[str, float]:
        errors = super().errors(pred)
        (iso_pred, rest_pred), (iso_true, rest_true) = (self._split(pred["pred"]),
                                                        self._split(pred["true"]))
        errors["isotropic_mae"] = float((iso_pred - iso_true).abs().mean())
        errors["objective"] = float(self._objective(pred["pred"], pred["true"]))
        if self.frame_free:
            errors["shape_sign_agreement"] = float(
                (torch.sign(self.shape(rest_pred)) == torch.sign(self.shape(rest_true)))
                .to(pred["pred"].dtype).mean())
        return errors


class DipoleMagnitudeTask(_StructuredTask):
    r"""The magnitude of the dipole moment (QM9's :obj:`mu`, D, column
    :obj:`column` of :obj:`y`) from a model with :obj:`output="dipole"`:
    learned and scored on :math:`\lVert \hat{\boldsymbol{\mu}} \rVert`, as
    PaiNN does, since QM9 gives the magnitude only."""

    def __init__(self, column: int, std: float):
        super().__init__(std)
        self.column = column

    def _pairs(self, model, data):
        mu = model(data.z, data.pos, data.batch)
        # The norm's gradient is undefined at zero (a symmetric molecule):
        # 1e-12 D^2 keeps it finite.
        return (mu.pow(2).sum(-1) + 1e-12).sqrt(), data.y[:, self.column]
