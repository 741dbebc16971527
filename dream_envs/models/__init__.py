"""Learned environment models."""

from dream_envs.models.ensemble import EnsembleConfig, EnsembleDynamics, EnsemblePrediction, FitResult, ModelStep
from dream_envs.models.task_functions import KNOWN_REWARDS, KNOWN_TERMINATIONS

__all__ = [
    "EnsembleConfig",
    "EnsembleDynamics",
    "EnsemblePrediction",
    "FitResult",
    "ModelStep",
    "KNOWN_REWARDS",
    "KNOWN_TERMINATIONS",
]
