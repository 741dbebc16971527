"""Imagination: a batch of model steps turned into env steps, shared by DreamEnv (B = 1) and DreamVecEnv (B = N).

Everything an env step needs beyond the raw model, in one batched torch pass and in one place: known or learned
reward and termination, the uncertainty cutoff, containment of non-finite predictions, and clipping to the
observation space. The two env classes only add their API's bookkeeping.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

from dream_envs.buffer import TransitionBuffer
from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.models.task_functions import KNOWN_REWARDS, KNOWN_TERMINATIONS, TaskFn, resolve_task_fn

__all__ = ["Imagination", "ImaginedStep", "resolve_threshold"]


class ImaginedStep(NamedTuple):
    """``B`` imagined env steps; every tensor is finite, on the model's device (from :meth:`Imagination.step`).

    :param next_obs: ``B x obs_dim``, clipped to the observation space; a row that went non-finite keeps its obs
    :param reward: ``B`` rewards, 0 on non-finite rows
    :param terminated: ``B`` flags, False on non-finite rows
    :param cut_off: ``B`` flags: disagreement above the threshold, or a non-finite prediction
    :param nonfinite: ``B`` flags: the model produced NaN/inf for the row
    :param uncertainty: ``B`` ensemble disagreements, +inf on non-finite rows

    Example::

        import torch
        import gymnasium as gym
        import dream_envs
        from dream_envs.envs.imagination import Imagination

        imagination = Imagination(gym.make("Dream-Pendulum-v0").unwrapped.model)
        step = imagination.step(imagination.start_states[:2], torch.zeros(2, 1), torch.Generator().manual_seed(0))
        print(step.reward, step.uncertainty)
    """

    next_obs: torch.Tensor  # (B, obs_dim) clipped to the obs space; a row that went non-finite keeps its obs
    reward: torch.Tensor  # (B,) float, 0 on non-finite rows
    terminated: torch.Tensor  # (B,) bool, False on non-finite rows
    cut_off: torch.Tensor  # (B,) bool: disagreement above the threshold, or a non-finite prediction
    nonfinite: torch.Tensor  # (B,) bool
    uncertainty: torch.Tensor  # (B,) float, +inf on non-finite rows


def resolve_threshold(value: float | str | None, model: EnsembleDynamics) -> float | None:
    """``None`` (no cutoff), ``"auto"`` (the model's holdout-derived value) or a non-negative number."""
    if value is None:
        return None
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"uncertainty_threshold must be None, 'auto' or a number >= 0, got {value!r}")
        auto = float(model.auto_threshold)
        if not math.isfinite(auto):
            raise ValueError(
                "uncertainty_threshold='auto' needs a model fitted with a holdout split (holdout_ratio > 0); "
                "this model has no holdout-derived threshold. Pass a number instead."
            )
        return auto
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"uncertainty_threshold must be None, 'auto' or a number >= 0, got {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"uncertainty_threshold must be >= 0 (or None to disable the cutoff), got {value!r}")
    return float(value)


class Imagination:
    """Batched imagined env steps over an :class:`EnsembleDynamics`, with every argument checked up front.

    :param model: the fitted ensemble
    :param env_id: the real env's id, for ``"known"`` reward/termination functions
    :param start_states: real observations to start from (``K x *obs_shape``) or a :class:`TransitionBuffer`;
        default: the model's stored start states
    :param reward_fn: ``None`` (learned), an env id, ``"known"``, or a callable ``(obs, action, next_obs) -> B``
    :param termination_fn: like ``reward_fn``; ``None`` uses the learned head, or never terminates without one
    :param uncertainty_threshold: ``None``, ``"auto"`` or a number >= 0
    :param propagation: ``"ts1"`` or ``"mean"``
    :param deterministic: use the predicted means instead of sampling

    Example::

        import torch
        import gymnasium as gym
        import dream_envs
        from dream_envs.envs.imagination import Imagination

        model = gym.make("Dream-CartPole-v0").unwrapped.model
        imagination = Imagination(model, uncertainty_threshold="auto")
        obs = imagination.start_states[:4]
        step = imagination.step(obs, torch.tensor([0, 1, 0, 1]), torch.Generator().manual_seed(0))
        print(step.next_obs.shape, step.cut_off)
    """

    def __init__(
        self,
        model: EnsembleDynamics,
        env_id: str | None = None,
        start_states: np.ndarray | TransitionBuffer | None = None,
        reward_fn: str | TaskFn | None = None,
        termination_fn: str | TaskFn | None = None,
        uncertainty_threshold: float | str | None = None,
        propagation: str = "ts1",
        deterministic: bool = False,
    ):
        if not isinstance(model, EnsembleDynamics):
            raise TypeError(f"model must be an EnsembleDynamics, got {type(model).__name__}")
        if not bool(model.fitted):
            raise ValueError(
                "model has not been fitted: its predictions are random. Call model.fit(buffer) or load a saved model "
                "(EnsembleDynamics.load) before dreaming with it."
            )
        self.model = model
        self.env_id = env_id if env_id is not None else model.env_id
        self.reward_fn = resolve_task_fn(reward_fn, KNOWN_REWARDS, "reward_fn", self.env_id)
        self.termination_fn = resolve_task_fn(termination_fn, KNOWN_TERMINATIONS, "termination_fn", self.env_id)
        self.uncertainty_threshold = resolve_threshold(uncertainty_threshold, model)
        if propagation not in ("ts1", "mean"):
            raise ValueError(f"propagation must be 'ts1' or 'mean', got {propagation!r}")
        self.propagation = propagation
        self.deterministic = bool(deterministic)
        self.start_states = self._check_start_states(start_states)  # (K, obs_dim) on the model's device
        space = model.observation_space
        self._obs_low = torch.as_tensor(space.low.reshape(-1), device=model.device)
        self._obs_high = torch.as_tensor(space.high.reshape(-1), device=model.device)

    def _check_start_states(self, start_states: Any) -> torch.Tensor:
        obs_dim = self.model.obs_dim
        if start_states is None:
            if self.model.start_states is None:
                raise ValueError(
                    "no start states: the model holds none (fit it on a buffer with episode starts) and "
                    "start_states= was not given; pass real observations or a TransitionBuffer"
                )
            states = self.model.start_states
        elif isinstance(start_states, TransitionBuffer):
            states = torch.as_tensor(start_states.start_states())
        else:
            states = torch.as_tensor(np.asarray(start_states, np.float32))
        states = (states.reshape(len(states), -1) if states.ndim > 1 else states.reshape(1, -1)).float()
        if len(states) == 0 or states.shape[1] != obs_dim:
            raise ValueError(
                f"start_states must hold at least one observation of shape {self.model.observation_space.shape}, "
                f"got an array of shape {tuple(states.shape)}"
            )
        if not torch.isfinite(states).all():
            raise ValueError(f"start_states hold {int((~torch.isfinite(states)).any(1).sum())} non-finite row(s)")
        return states.to(self.model.device)

    @torch.no_grad()
    def step(self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator) -> ImaginedStep:
        """Imagine one env step for ``B`` rows: ``obs`` ``(B, obs_dim)``, raw ``action`` ``(B, ...)``."""
        model_step = self.model.step(
            obs, action, generator=generator, propagation=self.propagation, deterministic=self.deterministic
        )
        next_obs = model_step.next_obs
        reward = self.reward_fn(obs, action, next_obs) if self.reward_fn is not None else model_step.reward
        if self.termination_fn is not None:
            terminated = self.termination_fn(obs, action, next_obs)
        elif model_step.terminated is not None:
            terminated = model_step.terminated
        else:
            terminated = torch.zeros(len(obs), dtype=torch.bool, device=obs.device)
        uncertainty = model_step.uncertainty
        nonfinite = ~(torch.isfinite(next_obs).all(-1) & torch.isfinite(reward) & torch.isfinite(uncertainty))
        # A broken row ends as a truncation and hands back its last finite observation.
        next_obs = torch.where(nonfinite[:, None], obs, next_obs.clamp(self._obs_low, self._obs_high))
        reward = torch.where(nonfinite, torch.zeros_like(reward), reward)
        terminated = terminated & ~nonfinite
        uncertainty = torch.where(nonfinite, torch.full_like(uncertainty, math.inf), uncertainty)
        cut_off = (
            nonfinite if self.uncertainty_threshold is None else nonfinite | (uncertainty > self.uncertainty_threshold)
        )
        return ImaginedStep(next_obs, reward, terminated, cut_off, nonfinite, uncertainty)
