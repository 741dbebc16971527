"""Planning in the learned model: trajectory optimisers (CEM, iCEM, MPPI, categorical CEM) over particle rollouts of
the ensemble, and the receding-horizon MPC planner. SB3-free; the PETS agent built on it is
:class:`dream_envs.agents.MPCAgent`."""

from dream_envs.planning.mcts import BatchedMCTS, SearchModel, SearchResult  # noqa: F401 (SearchModel: a Protocol)
from dream_envs.planning.mpc import MPCPlanner
from dream_envs.planning.optimizers import (
    CEM,
    ICEM,
    MPPI,
    OPTIMIZERS,
    CategoricalCEM,
    TrajectoryOptimizer,
    colored_noise,
)
from dream_envs.planning.trajectories import PARTICLE_PROPAGATIONS, TrajectoryEvaluator

__all__ = [
    "CEM",
    "BatchedMCTS",
    "ICEM",
    "MPPI",
    "OPTIMIZERS",
    "PARTICLE_PROPAGATIONS",
    "SearchResult",
    "CategoricalCEM",
    "MPCPlanner",
    "TrajectoryEvaluator",
    "TrajectoryOptimizer",
    "colored_noise",
]
