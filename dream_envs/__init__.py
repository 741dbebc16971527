"""dream-envs: learned ensemble models of gymnasium environments, wrapped as gymnasium "dream" envs.

Importing this package registers ``Dream-CartPole-v0``, ``Dream-Acrobot-v0`` and ``Dream-Pendulum-v0``.
"""

from dream_envs.buffer import TransitionBuffer, Transitions
from dream_envs.envs import DREAM_IDS, DreamEnv, PixelObservation, pretrained_model_path, register_dream_envs
from dream_envs.io import ModelFileError
from dream_envs.models import (
    KNOWN_REWARDS,
    KNOWN_TERMINATIONS,
    EnsembleConfig,
    EnsembleDynamics,
    EnsemblePrediction,
    FitResult,
    ModelFitError,
    ModelStep,
)

__version__ = "0.1.0"

__all__ = [
    "DREAM_IDS",
    "DreamEnv",
    "EnsembleConfig",
    "EnsembleDynamics",
    "EnsemblePrediction",
    "FitResult",
    "KNOWN_REWARDS",
    "KNOWN_TERMINATIONS",
    "ModelFileError",
    "ModelFitError",
    "ModelStep",
    "PixelObservation",
    "TransitionBuffer",
    "Transitions",
    "__version__",
    "pretrained_model_path",
    "register_dream_envs",
]

register_dream_envs()
