"""Model-predictive control over the ensemble: a receding-horizon planner (the PETS agent is ``agents.MPCAgent``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.models.task_functions import TaskFn
from dream_envs.planning.optimizers import OPTIMIZERS, TrajectoryOptimizer
from dream_envs.planning.trajectories import TrajectoryEvaluator

__all__ = ["MPCPlanner"]


class MPCPlanner:
    """Plan ``horizon`` steps ahead in the model from the current real state, take the first action, and start the
    next step's search from the rest of this plan (receding horizon with warm start).

    :param model: a fitted ensemble
    :param optimizer: ``"auto"`` (CEM for Box actions, categorical CEM for Discrete), ``"cem"``, ``"mppi"``,
        ``"categorical-cem"``, or a :class:`TrajectoryOptimizer`
    :param horizon: planning horizon in steps
    :param population: candidate sequences per iteration
    :param iterations: optimiser iterations per real step
    :param particles: particles per candidate (a multiple of the ensemble size)
    :param propagation: ``"ts1"``, ``"tsinf"`` or ``"expectation"`` (see :class:`TrajectoryEvaluator`)
    :param reward_fn: ``None`` (learned), an env id, ``"known"`` or a callable
    :param termination_fn: like ``reward_fn``
    :param gamma: discount of the planning objective
    :param seed: seeds the planner's sampling
    :param optimizer_kwargs: further arguments of the optimiser (``elite_fraction``, ``alpha``, ``temperature``, ...)

    Example::

        import gymnasium as gym
        from dream_envs import EnsembleDynamics, TransitionBuffer
        from dream_envs.planning import MPCPlanner

        env = gym.make("Pendulum-v1")
        model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=4, num_elites=4, seed=0)
        model.fit(TransitionBuffer.from_env(env).collect(env, 500, seed=0), max_epochs=2, seed=0)
        planner = MPCPlanner(model, horizon=5, population=32, iterations=2, particles=4, seed=0)
        print(planner.plan(env.reset(seed=0)[0]))  # one action, shaped like the action space
    """

    def __init__(
        self,
        model: EnsembleDynamics,
        optimizer: str | TrajectoryOptimizer = "auto",
        horizon: int = 15,
        population: int = 400,
        iterations: int = 5,
        particles: int = 20,
        propagation: str = "ts1",
        reward_fn: str | TaskFn | None = None,
        termination_fn: str | TaskFn | None = None,
        gamma: float = 1.0,
        seed: int | None = None,
        **optimizer_kwargs: Any,
    ):
        self.model = model
        self.evaluator = TrajectoryEvaluator(model, particles, propagation, reward_fn, termination_fn, gamma=gamma)
        if isinstance(optimizer, TrajectoryOptimizer):
            self.optimizer = optimizer
        else:
            if optimizer == "auto":
                optimizer = "categorical-cem" if isinstance(model.action_space, spaces.Discrete) else "cem"
            if optimizer not in OPTIMIZERS:
                raise ValueError(f"optimizer must be 'auto', one of {sorted(OPTIMIZERS)} or a TrajectoryOptimizer, "
                                 f"got {optimizer!r}")  # fmt: skip
            sizes = {"horizon": horizon, "population": population, "iterations": iterations}
            self.optimizer = OPTIMIZERS[optimizer](model.action_space, device=model.device, **sizes, **optimizer_kwargs)
        self.generator = torch.Generator(device=model.device)
        self.generator.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))

    def reset(self) -> None:
        """A new episode: forget the warm start."""
        self.optimizer.reset()

    def plan(self, obs: Any) -> np.ndarray:
        """The action to take in ``obs`` (a numpy value shaped like the action space)."""
        sequence = self.optimizer.optimize(lambda actions: self.evaluator.returns(obs, actions, self.generator),
                                           self.generator)  # fmt: skip
        self.optimizer.shift()
        return sequence[0].cpu().numpy().reshape(self.model.action_space.shape)
