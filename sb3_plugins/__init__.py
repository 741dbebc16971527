"""sb3_plugins: Stable-Baselines3 plug-ins for dream-envs (this is where SB3 enters; dream_envs never imports it)."""

from sb3_plugins.callbacks import DynaCallback
from sb3_plugins.checkpoint import DynaCheckpointCallback
from sb3_plugins.dream_training import ALGOS, DreamTrainingResult, train_in_dream
from sb3_plugins.dream_vec_env import DreamVecEnv
from sb3_plugins.evaluation import EpisodesToThreshold, RealStepsToThreshold

__version__ = "0.1.0"

__all__ = [
    "ALGOS",
    "DreamTrainingResult",
    "DreamVecEnv",
    "DynaCallback",
    "DynaCheckpointCallback",
    "EpisodesToThreshold",
    "RealStepsToThreshold",
    "train_in_dream",
    "__version__",
]
