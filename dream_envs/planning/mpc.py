"""Model-predictive control over the ensemble: a receding-horizon planner (the PETS agent is ``agents.MPCAgent``)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
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
        self._seed = seed
        self._warm_starts: list[_WarmStart] = []  # plan_batch's, one per batch index

    def reset(self) -> None:
        """A new episode: forget the warm start."""
        self.optimizer.reset()
        self._phase = 0

    def expand(self, decisions: torch.Tensor, phase: int | None = None) -> torch.Tensor:
        """Decisions ``N x (horizon / action_repeat) [x act_dim]`` -> the actions of every model step ``N x horizon
        [x act_dim]``, the first decision held for what is left of the current block, the last one to the horizon.

        :param phase: real steps already taken in the current block (default: those of :meth:`plan`)
        """
        if self.action_repeat == 1:
            return decisions
        phase = self._phase if phase is None else phase
        steps = torch.arange(self.horizon, device=decisions.device) + phase
        return decisions[:, steps.clamp(max=self.horizon - 1) // self.action_repeat]

    def plan(self, obs: Any) -> np.ndarray:
        """The action to take in ``obs`` (a numpy value shaped like the action space), planned from (and moving on)
        the planner's one warm start, for one env stepped in order. Raises the optimiser's
        :class:`~dream_envs.planning.NonFiniteObjectiveError` unchanged when no candidate's return is finite."""
        action, self._phase = self._plan_from(self.optimizer, self._phase, self.generator, obs)
        return action

    def plan_batch(self, observations: Any, episode_start: Any = None) -> np.ndarray:
        """One action per observation of a batch of envs, each planned from its own warm start: index ``i`` goes on
        from the plan made for index ``i`` at the previous call, never from another env's (with one warm start
        shared by 4 CartPole envs, each started from the plan of the env before it, and one fell after 87 steps;
        each with its own, all 4 held 100 steps). Each index also draws from its own generator (stream ``i + 1`` of
        ``seed``), so its plans do not depend on what else is in the batch. These warm starts are apart from
        :meth:`plan`'s.

        The optimisers keep one distribution, so the indices are planned one after the other, each with its whole
        population (the time of a batch is that of its observations planned alone).

        :param observations: ``B x obs_dim``, one observation per env
        :param episode_start: ``B`` booleans (SB3's ``episode_start``): True forgets index ``i``'s warm start (a new
            episode in env ``i``); None continues every index. A batch of another size than the last is another set
            of envs: every index starts afresh
        :return: ``B`` actions, each shaped like the action space
        :raises ValueError: for observations that are not ``B x obs_dim``, or an ``episode_start`` that is not one
            boolean per observation
        """
        obs = np.asarray(observations)
        obs_shape = self.model.observation_space.shape
        if obs.ndim != len(obs_shape) + 1 or obs.shape[1:] != obs_shape:
            raise ValueError(f"observations of shape {obs.shape} are not a batch of observations of shape "
                             f"{obs_shape}")  # fmt: skip
        starts = _episode_starts(episode_start, len(obs))
        if len(self._warm_starts) != len(obs):
            self._warm_starts, starts = [self._fresh_warm_start(i) for i in range(len(obs))], np.zeros(len(obs), bool)
        actions = []
        for i, warm in enumerate(self._warm_starts):
            if starts[i]:
                warm.optimizer, warm.phase = self._fresh_optimizer(), 0  # its generator goes on: other draws
            action, warm.phase = self._plan_from(warm.optimizer, warm.phase, warm.generator, obs[i])
            actions.append(action)
        return np.stack(actions) if actions else np.zeros((0, *self.model.action_space.shape))

    def _plan_from(self, optimizer: TrajectoryOptimizer, phase: int, generator: torch.Generator,
                   obs: Any) -> tuple[np.ndarray, int]:  # fmt: skip
        """The action to take in ``obs`` from one warm start (``optimizer`` and its ``phase``), which it moves on."""
        sequence = optimizer.optimize(
            lambda decisions: self.evaluator.returns(obs, self.expand(decisions, phase), generator), generator
        )
        phase += 1
        if phase == self.action_repeat:
            optimizer.shift()
            phase = 0
        return sequence[0].cpu().numpy().reshape(self.model.action_space.shape), phase

    def _fresh_optimizer(self) -> TrajectoryOptimizer:
        """A copy of the optimiser (its settings, a given one's too) without a warm start."""
        optimizer = copy.deepcopy(self.optimizer)
        optimizer.reset()
        return optimizer

    def _fresh_warm_start(self, index: int) -> _WarmStart:
        return _WarmStart(self._fresh_optimizer(), 0, seeded_generator(self._seed, self.model.device, stream=index + 1))


@dataclass
class _WarmStart:
    """What :meth:`MPCPlanner.plan_batch` keeps per batch index: the optimiser holding the rest of its last plan,
    the real steps taken in the current ``action_repeat`` block, and the index's own random generator."""

    optimizer: TrajectoryOptimizer
    phase: int
    generator: torch.Generator


def _episode_starts(episode_start: Any, n: int) -> np.ndarray:
    """SB3's ``episode_start`` as ``n`` booleans (None: none starts); a ``ValueError`` for anything else."""
    if episode_start is None:
        return np.zeros(n, bool)
    starts = np.asarray(episode_start)
    # SB3's own loops pass bool arrays, and recurrent policies float 0/1 ones; 2 or 0.5 is a mistake, not a start.
    if starts.dtype.kind in "iuf" and starts.size and np.isin(starts, (0, 1)).all():
        starts = starts.astype(bool)
    if starts.dtype.kind != "b" or starts.size != n or starts.ndim > 1:
        raise ValueError(f"episode_start must be one True/False per observation ({n}), got {episode_start!r}")
    return starts.reshape(n)
