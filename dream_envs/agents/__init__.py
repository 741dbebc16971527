"""dream-envs' own agents, shaped like SB3's (``learn``/``predict``/``save``/``load``, callbacks, logger).

Not imported by ``import dream_envs``: these agents use SB3's logger and callback contracts, and a user who only
wants a dream env never imports SB3.
"""

from dream_envs.agents.base import ModelBasedAgent
from dream_envs.agents.dyna_q import DynaQ
from dream_envs.agents.mpc_agent import MPCAgent
from dream_envs.agents.muzero import MuZero
from dream_envs.agents.tabular_model import TabularModel
from dream_envs.agents.world_models import WorldModels

__all__ = ["DynaQ", "MPCAgent", "ModelBasedAgent", "MuZero", "TabularModel", "WorldModels"]
