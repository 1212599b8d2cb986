"""The model artifact (a fitted aligner, its encoders and scoring settings) and the one path
that fits it from a dataset."""

from xmodal.model.artifact import EncoderMismatchError, EncoderRecord, Model, route
from xmodal.model.calibrate import calibrate_model
from xmodal.model.encoded import evaluate_encoded, fit_encoded
from xmodal.model.fitting import TrainingSet, fit_bridges, fit_model, pair_training_set, update_model

__all__ = [
    "EncoderMismatchError",
    "EncoderRecord",
    "Model",
    "TrainingSet",
    "calibrate_model",
    "evaluate_encoded",
    "fit_bridges",
    "fit_encoded",
    "fit_model",
    "pair_training_set",
    "route",
    "update_model",
]
