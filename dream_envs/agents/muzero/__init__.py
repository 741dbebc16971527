"""MuZero: MCTS in a learned latent model (networks, categorical support, replay with unrolled targets, agent).

The search itself is SB3-free and lives in :mod:`dream_envs.planning.mcts`.
"""

from dream_envs.agents.muzero.agent import MuZero
from dream_envs.agents.muzero.networks import MuZeroNetwork, NetworkSearchModel
from dream_envs.agents.muzero.replay import MuZeroReplay, UnrollTargets

__all__ = ["MuZero", "MuZeroNetwork", "MuZeroReplay", "NetworkSearchModel", "UnrollTargets"]
