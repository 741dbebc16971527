"""Learned environment models."""

from dream_envs.models.ensemble import EnsembleConfig, EnsembleDynamics, EnsemblePrediction, FitResult, ModelStep
from dream_envs.models.fit_schedule import FitSchedule, fit_schedule
from dream_envs.models.task_functions import KNOWN_REWARDS, KNOWN_TERMINATIONS
from dream_envs.models.training import ModelFitError

__all__ = [
    "EnsembleConfig",
    "EnsembleDynamics",
    "EnsemblePrediction",
    "FitResult",
    "FitSchedule",
    "ModelFitError",
    "fit_schedule",
    "ModelStep",
    "KNOWN_REWARDS",
    "KNOWN_TERMINATIONS",
]
