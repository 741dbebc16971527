"""Model-predictive control over the ensemble: a receding-horizon planner (the PETS agent is ``agents.MPCAgent``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from dream_envs.checks import check_int, seeded_generator
from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.models.task_functions import TaskFn
from dream_envs.planning.optimizers import OPTIMIZERS, TrajectoryOptimizer
from dream_envs.planning.trajectories import TrajectoryEvaluator

__all__ = ["MPCPlanner"]


class MPCPlanner:
    """Plan ``horizon`` steps ahead in the model from the current real state, take the first action, and start the
    next step's search from the rest of this plan (receding horizon with warm start).

    With ``action_repeat=k`` each planned action is held for ``k`` model steps (move blocking): the optimiser
    searches ``horizon // k`` decisions instead of ``horizon`` actions, so a long look-ahead stays a small search
    (meant for tasks whose failures show only far ahead; on CartPole with the known termination a 50-step look-ahead
    of 10 decisions still missed the target, docs/mpc.md). Blocks follow the real clock: ``j`` real steps into
    a block, the current decision is held for the ``k - j`` steps left of it, and the warm start moves on by one
    decision once a whole block has passed. A new plan is still made at every real step.

    :param model: a fitted ensemble
    :param optimizer: ``"auto"`` (CEM for Box actions, categorical CEM for Discrete), ``"cem"``, ``"mppi"``,
        ``"categorical-cem"``, or a :class:`TrajectoryOptimizer`
    :param horizon: planning horizon in model steps (a multiple of ``action_repeat``)
    :param population: candidate sequences per iteration
    :param iterations: optimiser iterations per real step
    :param particles: particles per candidate (a multiple of the ensemble size)
    :param propagation: ``"ts1"``, ``"tsinf"`` or ``"expectation"`` (see :class:`TrajectoryEvaluator`)
    :param reward_fn: ``None`` (learned), an env id, ``"known"`` or a callable
    :param termination_fn: like ``reward_fn``
    :param gamma: discount of the planning objective
    :param action_repeat: model steps each planned action is held for (1: every step is planned)
    :param terminal_value: ``None``, or a callable giving the value of the horizon's last states (a fitted
        :class:`~dream_envs.planning.ModelValueFunction` with the same ``gamma``): the return beyond the horizon
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
        action_repeat: int = 1,
        terminal_value: Callable[[torch.Tensor], torch.Tensor] | None = None,
        seed: int | None = None,
        **optimizer_kwargs: Any,
    ):
        check_int("action_repeat", action_repeat)
        check_int("horizon", horizon)
        if horizon % action_repeat:
            raise ValueError(f"horizon must be a multiple of action_repeat ({action_repeat}), got {horizon!r}")
        self.model, self.horizon, self.action_repeat = model, horizon, action_repeat
        self.evaluator = TrajectoryEvaluator(model, particles, propagation, reward_fn, termination_fn, gamma=gamma,
                                             terminal_value=terminal_value)  # fmt: skip
        if isinstance(optimizer, TrajectoryOptimizer):
            if optimizer.horizon != horizon // action_repeat:
                raise ValueError(f"the optimizer plans {optimizer.horizon} steps, but horizon={horizon} with "
                                 f"action_repeat={action_repeat} needs {horizon // action_repeat}")  # fmt: skip
            self.optimizer = optimizer
        else:
            if optimizer == "auto":
                optimizer = "categorical-cem" if isinstance(model.action_space, spaces.Discrete) else "cem"
            if optimizer not in OPTIMIZERS:
                raise ValueError(f"optimizer must be 'auto', one of {sorted(OPTIMIZERS)} or a TrajectoryOptimizer, "
                                 f"got {optimizer!r}")  # fmt: skip
            sizes = {"horizon": horizon // action_repeat, "population": population, "iterations": iterations}
            self.optimizer = OPTIMIZERS[optimizer](model.action_space, device=model.device, **sizes, **optimizer_kwargs)
        self.generator = seeded_generator(seed, model.device)
        self._phase = 0  # real steps taken in the current block of action_repeat steps

    def reset(self) -> None:
        """A new episode: forget the warm start."""
        self.optimizer.reset()
        self._phase = 0

    def expand(self, decisions: torch.Tensor) -> torch.Tensor:
        """Decisions ``N x (horizon / action_repeat) [x act_dim]`` -> the actions of every model step ``N x horizon
        [x act_dim]``, the first decision held for what is left of the current block, the last one to the horizon."""
        if self.action_repeat == 1:
            return decisions
        steps = torch.arange(self.horizon, device=decisions.device) + self._phase
        return decisions[:, steps.clamp(max=self.horizon - 1) // self.action_repeat]

    def plan(self, obs: Any) -> np.ndarray:
        """The action to take in ``obs`` (a numpy value shaped like the action space). Raises the optimiser's
        :class:`~dream_envs.planning.NonFiniteObjectiveError` unchanged when no candidate's return is finite."""
        sequence = self.optimizer.optimize(
            lambda decisions: self.evaluator.returns(obs, self.expand(decisions), self.generator), self.generator
        )
        self._phase += 1
        if self._phase == self.action_repeat:
            self.optimizer.shift()
            self._phase = 0
        return sequence[0].cpu().numpy().reshape(self.model.action_space.shape)
