"""Dream environments: gymnasium Envs over learned models, and their registration."""

from dream_envs.envs.dream_env import DreamEnv
from dream_envs.envs.pixels import PixelObservation
from dream_envs.envs.registration import DREAM_IDS, pretrained_model_path, register_dream_envs

__all__ = ["DreamEnv", "DREAM_IDS", "PixelObservation", "pretrained_model_path", "register_dream_envs"]
