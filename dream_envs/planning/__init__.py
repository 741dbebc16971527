"""Planning in the learned model: trajectory optimisers (CEM, iCEM, MPPI, categorical CEM) over particle rollouts of
the ensemble, the receding-horizon MPC planner, and a state value learned in the model for what lies beyond its
horizon. SB3-free; the PETS agent built on it is :class:`dream_envs.agents.MPCAgent`."""

from dream_envs.planning.mcts import BatchedMCTS, SearchModel, SearchResult  # noqa: F401 (SearchModel: a Protocol)
from dream_envs.planning.mpc import MPCPlanner
from dream_envs.planning.optimizers import (
    CEM,
    ICEM,
    MPPI,
    OPTIMIZERS,
    CategoricalCEM,
    NonFiniteObjectiveError,
    TrajectoryOptimizer,
    colored_noise,
)
from dream_envs.planning.trajectories import PARTICLE_PROPAGATIONS, TrajectoryEvaluator
from dream_envs.planning.value import ModelValueFunction, ValueFitResult

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
    "ModelValueFunction",
    "NonFiniteObjectiveError",
    "TrajectoryEvaluator",
    "TrajectoryOptimizer",
    "ValueFitResult",
    "colored_noise",
]
