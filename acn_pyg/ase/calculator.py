r"""An ASE calculator for trained models: energies and forces of any
:class:`ase.Atoms` from one checkpoint or an ensemble of them, for
geometry optimisation, molecular dynamics and every other ASE tool."""
from typing import Sequence, Union

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from torch_geometric.data import Data

from acn_pyg.inference.checkpoint import TrainedModel, load_trained
from acn_pyg.inference.predict import check_ensemble
from acn_pyg.train.tasks import energy_and_forces


class AtomCloudCalculator(Calculator):
    r"""Energy :math:`E` and forces :math:`\mathbf{F}_i = -\partial E /
    \partial \mathbf{p}_i` (by autograd: exactly the gradient of the
    energy, so molecular dynamics conserves the total energy up to the
    integrator's error) of a trained model, in eV and eV/A.

    With several checkpoints (an ensemble) the energy and forces are the
    members' mean, and :obj:`results["energy_std"]` and
    :obj:`results["forces_std"]` (:obj:`[n, 3]`) their standard deviation
    across members, an estimate of the model's uncertainty
    (``calc.get_property("energy_std", atoms)``).

    Periodic cells are not supported: an :class:`~ase.Atoms` with
    :obj:`pbc` true along any axis is refused, as is an element the model
    never saw in training.

    Args:
        checkpoints (str or list): Checkpoint files or run folders (their
            ``best.pt``), or :class:`~acn_pyg.inference.TrainedModel`; each
            must predict an energy.
        device (str or torch.device, optional): :obj:`"cpu"`, :obj:`"cuda"`
            or :obj:`"auto"`. (default: :obj:`"auto"`)
        dtype (torch.dtype, optional): The models' precision;
            :obj:`torch.float64` makes finite-difference checks and long
            NVE runs tighter. (default: :obj:`torch.float32`)
        **kwargs: Passed to :class:`ase.calculators.calculator.Calculator`.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, checkpoints: Union[str, TrainedModel, Sequence], device="auto",
                 dtype: torch.dtype = torch.float32, **kwargs):
        super().__init__(**kwargs)
        if isinstance(checkpoints, (str, TrainedModel)):
            checkpoints = [checkpoints]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.dtype = dtype
        self.members = [c if isinstance(c, TrainedModel) else load_trained(c) for c in checkpoints]
        check_ensemble(self.members)
        for m in self.members:
            if not m.energy:
                raise ValueError(f"{m.path} predicts '{m.target}' ({m.unit}), not a potential "
                                 "energy: an ASE calculator needs an energy model")
            if m.unit != "eV":
                raise ValueError(f"{m.path} predicts energies in {m.unit!r}; ASE works in eV")
            m.model.to(device=self.device, dtype=dtype).eval()
        if len(self.members) > 1:
            self.implemented_properties = self.implemented_properties + ["energy_std",
                                                                         "forces_std"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if atoms.pbc.any():
            raise ValueError(f"{atoms.get_chemical_formula()} is periodic (pbc="
                             f"{atoms.pbc.tolist()}): periodic cells are not supported yet")
        for m in self.members:
            m.check_elements(atoms.numbers, atoms.get_chemical_formula())
        z = torch.as_tensor(atoms.numbers, dtype=torch.long, device=self.device)
        data = Data(z=z, pos=torch.tensor(atoms.positions, dtype=self.dtype, device=self.device),
                    batch=torch.zeros_like(z))
        energies, forces = [], []
        for m in self.members:
            energy, force = energy_and_forces(m.model, data)
            energies.append(energy.item())
            forces.append(force.detach().cpu().double().numpy())
        energies, forces = np.array(energies), np.stack(forces)
        self.results["energy"] = self.results["free_energy"] = float(energies.mean())
        self.results["forces"] = forces.mean(0)
        if len(self.members) > 1:
            self.results["energy_std"] = float(energies.std())
            self.results["forces_std"] = forces.std(0)
