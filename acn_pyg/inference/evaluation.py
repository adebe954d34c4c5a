"""The test of a checkpoint, again: its run's test split rebuilt from the
configuration the checkpoint holds, and its test errors computed as the
training program computed them (``acn-pyg test``)."""
import os
from typing import Dict, Optional

from acn_pyg.inference.checkpoint import TrainedModel


def test_checkpoint(trained: TrainedModel, device="cpu", batch_size: Optional[int] = None,
                    **data_overrides) -> Dict[str, float]:
    """Test errors of :obj:`trained` on its run's held-out structures.

    Args:
        trained (TrainedModel): A checkpoint of ``acn-pyg train``, which
            holds its run's configuration.
        device (optional): Where to compute. (default: :obj:`"cpu"`)
        batch_size (int, optional): Structures per batch (the errors do not
            depend on it). (default: the run's)
        **data_overrides: Where the data are now, if not where the run found
            them: :obj:`root`, :obj:`data_source`, :obj:`subset` (QM9) or
            :obj:`data` (a structure file); :obj:`None` values are ignored.

    Returns:
        For a QM9 target, :obj:`test_mae` in the target's unit; for a
        structure file, :obj:`test_energy_mae`, :obj:`test_forces_mae` and
        their RMSEs; with :obj:`target`, :obj:`unit` and :obj:`test_size`.
    """
    from torch_geometric.loader import DataLoader

    from acn_pyg.train.data import prepare
    from acn_pyg.train.loop import predict
    from acn_pyg.train.report import run_config
    from acn_pyg.train.tasks import PropertyTask

    if trained.config is None:
        raise ValueError(f"{trained.path} holds no training configuration (saved by "
                         "save_model without config=...): its test split is unknown")
    # As a run's metrics.json: fields this version lacks are left out, and a
    # config saved before the output heads learned scalars.
    overrides = {k: v for k, v in data_overrides.items() if v is not None}
    cfg = run_config({"config": {**trained.config, **overrides}})
    if not cfg.on_qm9 and not os.path.isfile(cfg.data):
        raise FileNotFoundError(f"the run's structure file {cfg.data!r} is not there: give "
                                "its place with --data")
    prep = prepare(cfg)
    loader = DataLoader(prep.dataset[prep.split["test"]], batch_size=batch_size or cfg.batch_size)
    model = trained.model.to(device)
    out = {"target": trained.target, "unit": trained.unit,
           "test_size": int(prep.split["test"].numel())}
    if isinstance(prep.task, PropertyTask):
        pred, true = predict(model, loader, prep.t_index, device)
        out["test_mae"] = float((pred - true).abs().mean())
    else:  # energies and forces, charges, dipoles, tensors
        out.update({f"test_{k}": v
                    for k, v in prep.task.errors(prep.task.predict(model, loader,
                                                                   device)).items()})
    model.eval()
    return out
