"""World Models (Ha & Schmidhuber 2018): V (``vae.py``), M (``mdn_rnn.py``), the dream (``latent_dream.py``),
C and CMA-ES (``controller.py``), real frames (``frames.py``) and the agent that ties them (``agent.py``)."""

from dream_envs.agents.world_models.agent import WorldModels, pixel_env
from dream_envs.agents.world_models.controller import CMAResult, LinearController, dream_returns, train_controller
from dream_envs.agents.world_models.frames import FrameStore
from dream_envs.agents.world_models.latent_dream import DreamState, LatentDream, LatentDreamEnv, check_tau
from dream_envs.agents.world_models.mdn_rnn import MDNRNN, LatentSequences, MDNLoss, MDNOutput, fit_mdn_rnn
from dream_envs.agents.world_models.vae import ConvVAE, VAELoss, fit_vae, frames_to_tensor

__all__ = [
    "CMAResult",
    "ConvVAE",
    "DreamState",
    "FrameStore",
    "LatentDream",
    "LatentDreamEnv",
    "LatentSequences",
    "LinearController",
    "MDNLoss",
    "MDNOutput",
    "MDNRNN",
    "VAELoss",
    "WorldModels",
    "check_tau",
    "dream_returns",
    "fit_mdn_rnn",
    "fit_vae",
    "frames_to_tensor",
    "pixel_env",
    "train_controller",
]
