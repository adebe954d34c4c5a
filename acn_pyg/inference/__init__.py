"""Using trained models: self-contained checkpoints
(:func:`save_model`, :func:`load_model`), predictions on structure files
(:func:`predict_structures`, ``acn-pyg predict``) and export for
deployment (:func:`export_model`, ``acn-pyg export``)."""
from acn_pyg.inference.checkpoint import (FORMAT, TrainedModel, build, load_model, load_trained,
                                          model_spec, save_model)

__all__ = ["FORMAT", "TrainedModel", "build", "load_model", "load_trained", "model_spec",
           "save_model"]
