"""Model-predictive control over the ensemble: a receding-horizon planner (the PETS agent is ``agents.MPCAgent``)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from dream_envs.checks import check_int, check_keywords, seeded_generator
from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.models.task_functions import TaskFn
from dream_envs.planning.optimizers import OPTIMIZERS, TrajectoryOptimizer
from dream_envs.planning.trajectories import TrajectoryEvaluator
from dream_envs.spaces import check_observations, spaces_equal

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

    :param model: an ensemble; it must be fitted (or loaded) before the first plan, which refuses an unfitted one
    :param optimizer: ``"auto"`` (CEM for Box actions, categorical CEM for Discrete), ``"cem"``, ``"mppi"``,
        ``"categorical-cem"``, or a :class:`TrajectoryOptimizer`
    :param horizon: planning horizon in model steps (a multiple of ``action_repeat``)
    :param population: candidate sequences per iteration
    :param iterations: optimiser iterations per real step
    :param particles: particles per candidate (a multiple of the ensemble size)
    :param propagation: ``"ts1"``, ``"tsinf"`` or ``"expectation"`` (see :class:`TrajectoryEvaluator`)
    :param reward_fn: ``None`` (learned), an env id, ``"known"``, ``"module:function"`` or a callable
    :param termination_fn: like ``reward_fn``
    :param gamma: discount of the planning objective
    :param action_repeat: model steps each planned action is held for (1: every step is planned)
    :param terminal_value: ``None``, or a callable giving the value of the horizon's last states (a fitted
        :class:`~dream_envs.planning.ModelValueFunction` with the same ``gamma``): the return beyond the horizon
    :param seed: seeds the planner's sampling
    :param optimizer_kwargs: further arguments of the named optimiser (``elite_fraction``, ``alpha``,
        ``temperature``, ...), checked against its signature; the planner sets the action space, sizes and device
    :raises TypeError: for a model that is not an :class:`~dream_envs.EnsembleDynamics`
    :raises ValueError: for a setting out of range, an unknown optimiser name or keyword, or a given optimiser of
        another action space, horizon or device

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
        if not isinstance(model, EnsembleDynamics):
            raise TypeError(f"model must be an EnsembleDynamics (fitted or loaded), got {type(model).__name__}")
        action_repeat = check_int("action_repeat", action_repeat)
        horizon = check_int("horizon", horizon)
        if horizon % action_repeat:
            raise ValueError(f"horizon must be a multiple of action_repeat ({action_repeat}), got {horizon!r}")
        self.model, self.horizon, self.action_repeat = model, horizon, action_repeat
        self.evaluator = TrajectoryEvaluator(model, particles, propagation, reward_fn, termination_fn, gamma=gamma,
                                             terminal_value=terminal_value)  # fmt: skip
        if isinstance(optimizer, TrajectoryOptimizer):
            _check_given_optimizer(optimizer, model, horizon // action_repeat, horizon, action_repeat, optimizer_kwargs)
            self.optimizer = optimizer
        else:
            if not isinstance(optimizer, str) or (optimizer != "auto" and optimizer not in OPTIMIZERS):
                raise ValueError(f"optimizer must be 'auto', one of {sorted(OPTIMIZERS)} or a TrajectoryOptimizer, "
                                 f"got {optimizer!r}")  # fmt: skip
            if optimizer == "auto":
                optimizer = "categorical-cem" if isinstance(model.action_space, spaces.Discrete) else "cem"
            sizes = {"horizon": horizon // action_repeat, "population": population, "iterations": iterations}
            cls = OPTIMIZERS[optimizer]
            optimizer_kwargs = check_keywords("optimizer_kwargs", optimizer_kwargs, cls.__init__, {
                "action_space": "the planner plans in the model's action space",
                "horizon": "the planner sets it to horizon // action_repeat (pass horizon= to MPCPlanner or MPCAgent)",
                "population": "pass population= to MPCPlanner or MPCAgent",
                "iterations": "pass iterations= to MPCPlanner or MPCAgent",
                "device": "the optimiser runs on the model's device",
            })  # fmt: skip
            self.optimizer = cls(model.action_space, device=model.device, **sizes, **optimizer_kwargs)
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
        :class:`~dream_envs.planning.NonFiniteObjectiveError` unchanged when no candidate's return is finite.

        :param obs: one observation, shaped like the observation space (or flattened); a batch goes to
            :meth:`plan_batch`
        :raises ValueError: for an unfitted model, or an observation of another shape, not numeric, or holding NaN
            or +-inf (each would be the model's fault further in)
        """
        self._check_fitted()
        flat = check_observations(self.model.observation_space, obs, "obs")
        if len(flat) != 1:
            raise ValueError(f"plan takes one observation of shape {self.model.observation_space.shape}, got a batch "
                             f"of {len(flat)}; plan each env's observations with plan_batch")  # fmt: skip
        action, self._phase = self._plan_from(self.optimizer, self._phase, self.generator, flat[0])
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
        :raises ValueError: for an unfitted model, observations that are not a batch of the observation space's
            (``B x *shape``, or flattened), not numeric, or holding NaN or +-inf, or an ``episode_start`` that is not
            one boolean per observation
        """
        self._check_fitted()
        obs = check_observations(self.model.observation_space, observations, "observations")
        obs_shape = tuple(self.model.observation_space.shape)
        given = tuple(observations.shape if isinstance(observations, torch.Tensor) else np.shape(observations))
        if given == obs_shape:  # one observation without its batch dimension
            raise ValueError(f"observations of shape {given} are one observation, not a batch of observations of "
                             f"shape {obs_shape}: give a batch (1, {', '.join(map(str, obs_shape))}), or plan one "
                             f"observation with plan")  # fmt: skip
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

    def _check_fitted(self) -> None:
        if not bool(self.model.fitted):
            raise ValueError(
                "model has not been fitted: its predictions are random, and so would the plans be. Call "
                "model.fit(buffer) or load a saved model (EnsembleDynamics.load) before planning"
            )

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


def _check_given_optimizer(optimizer: TrajectoryOptimizer, model: EnsembleDynamics, decisions: int, horizon: int,
                           action_repeat: int, optimizer_kwargs: dict[str, Any]) -> None:  # fmt: skip
    """A ``ValueError`` for an optimiser given to :class:`MPCPlanner` that cannot plan for ``model``."""
    if optimizer_kwargs:
        raise ValueError(f"optimizer_kwargs {sorted(optimizer_kwargs)} are for an optimiser named by a string; the "
                         f"given {type(optimizer).__name__} has its own settings")  # fmt: skip
    if optimizer.horizon != decisions:
        raise ValueError(f"the optimizer plans {optimizer.horizon} steps, but horizon={horizon} with "
                         f"action_repeat={action_repeat} needs {decisions}")  # fmt: skip
    if not spaces_equal(optimizer.action_space, model.action_space):
        raise ValueError(f"the optimizer plans actions of {optimizer.action_space}, but the model takes "
                         f"{model.action_space}")  # fmt: skip
    ours, theirs = torch.device(optimizer.device), torch.device(model.device)
    if ours.type != theirs.type or (ours.index is not None and theirs.index is not None and ours.index != theirs.index):
        raise ValueError(f"the optimizer's sequences are on {ours}, the model on {theirs}: make the optimizer with "
                         f"device={str(theirs)!r}")  # fmt: skip


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
