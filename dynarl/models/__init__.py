"""World models (003 "model building"): ensemble dynamics, losses, trainer, model env, inverse model, diagnostics."""

from dynarl.models.dynamics import DynamicsModel, DynamicsModelConfig, load_model, save_model
from dynarl.models.trainer import FitResult, ModelTrainer, ModelTrainerConfig

__all__ = ["DynamicsModel", "DynamicsModelConfig", "ModelTrainer", "ModelTrainerConfig", "FitResult", "save_model", "load_model"]
