"""Imagination: a batch of model steps turned into env steps, shared by DreamEnv (B = 1) and DreamVecEnv (B = N).

Everything an env step needs beyond the raw model, in one batched torch pass and in one place: known or learned
reward and termination, the uncertainty cutoff and what happens at it (``uncertainty_mode``), containment of
non-finite predictions, and the observation bounds. The two env classes only add their API's bookkeeping.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
import torch

from dream_envs.buffer import TransitionBuffer
from dream_envs.checks import check_bool, check_number, is_number
from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.models.task_functions import (
    KNOWN_REWARDS,
    KNOWN_TERMINATIONS,
    TaskFn,
    check_finite_rewards,
    resolve_task_fn,
)
from dream_envs.spaces import check_observations

__all__ = [
    "UNCERTAINTY_MODES",
    "Imagination",
    "ImaginedStep",
    "check_threshold",
    "resolve_threshold",
    "resolve_uncertainty_mode",
]

# What an imagined episode does where the ensemble is too uncertain (or a prediction is not finite):
# "truncate": the episode is truncated; the agent bootstraps from the value of the uncertain state (optimistic).
# "terminate": MOReL's absorbing HALT state (Kidambi et al. 2020): the episode terminates, and the step's reward is
#     lowered by ``uncertainty_penalty`` (pessimistic).
# "penalty": MOPO's reward penalty (Yu et al. 2020): every step's reward is lowered by
#     ``uncertainty_penalty * disagreement * window / threshold`` (the penalty is ``uncertainty_penalty`` at the
#     disagreement that, sustained over the window, reaches the threshold), and the episode is truncated at the
#     cutoff as with "truncate".
UNCERTAINTY_MODES = ("truncate", "terminate", "penalty")
# The largest reward a dream can hold (its rewards are float32): penalties above it would become inf, then NaN.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class ImaginedStep(NamedTuple):
    """``B`` imagined env steps; every tensor is finite, on the model's device (from :meth:`Imagination.step`).

    :param next_obs: ``B x obs_dim`` within the observation bounds real data kept to; a row that went non-finite
        keeps its obs
    :param reward: ``B`` rewards (with the uncertainty mode's penalty); the lowest real reward on non-finite rows
    :param terminated: ``B`` flags: the env's termination, or (``"terminate"`` mode) the cutoff
    :param truncated: ``B`` flags: the cutoff, in the ``"truncate"`` and ``"penalty"`` modes
    :param cut_off: ``B`` flags: accumulated disagreement above the threshold, or a non-finite prediction
    :param nonfinite: ``B`` flags: the model produced NaN/inf for the row
    :param uncertainty: ``B`` accumulated disagreements (this step's and the previous ones' within the window, what
        the cutoff compares), +inf on non-finite rows
    :param disagreement: ``B`` ensemble disagreements of this step (+inf on non-finite rows)
    :param recent: ``B x window`` the disagreements of the last ``window`` steps, this one last: pass it to the next
        :meth:`Imagination.step` of the same episodes (zero the rows of episodes that start anew)

    Example::

        import torch
        import gymnasium as gym
        import dream_envs
        from dream_envs.envs.imagination import Imagination

        imagination = Imagination(gym.make("Dream-Pendulum-v0").unwrapped.model)
        step = imagination.step(imagination.start_states[:2], torch.zeros(2, 1), torch.Generator().manual_seed(0))
        print(step.reward, step.uncertainty, step.disagreement)
    """

    next_obs: torch.Tensor  # (B, obs_dim); a row that went non-finite keeps its obs
    reward: torch.Tensor  # (B,) float
    terminated: torch.Tensor  # (B,) bool
    truncated: torch.Tensor  # (B,) bool
    cut_off: torch.Tensor  # (B,) bool: accumulated disagreement above the threshold, or a non-finite prediction
    nonfinite: torch.Tensor  # (B,) bool
    uncertainty: torch.Tensor  # (B,) accumulated disagreement, +inf on non-finite rows
    disagreement: torch.Tensor  # (B,) this step's disagreement, +inf on non-finite rows
    recent: torch.Tensor  # (B, window) the last window steps' disagreements, this one last


def check_threshold(value: float | str | None) -> None:
    """Refuse an ``uncertainty_threshold`` that is not ``None``, ``"auto"`` or a number >= 0 (before any model
    exists, e.g. in a callback's constructor)."""
    if value is None or (isinstance(value, str) and value == "auto"):
        return
    if isinstance(value, str):
        raise ValueError(f"uncertainty_threshold must be None, 'auto' or a number >= 0, got {value!r}")
    if not is_number(value):
        raise TypeError(f"uncertainty_threshold must be None, 'auto' or a number >= 0, got {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"uncertainty_threshold must be >= 0 (or None to disable the cutoff), got {value!r}")


def resolve_threshold(value: float | str | None, model: EnsembleDynamics) -> float | None:
    """``None`` (no cutoff), ``"auto"`` (the model's calibrated value, see :attr:`EnsembleDynamics.cutoff_calibration`)
    or a number >= 0 (an accumulated disagreement: :meth:`EnsembleDynamics.disagreement` summed over the window)."""
    check_threshold(value)
    if value is None:
        return None
    if isinstance(value, str):
        auto = float(model.auto_threshold)
        if not math.isfinite(auto):
            raise ValueError(
                "uncertainty_threshold='auto' needs a model fitted by this dream-envs (the calibration is made at "
                "fit time); this model has none (a file from an earlier version). Refit it, or pass a number."
            )
        return auto
    return float(value)


def resolve_uncertainty_mode(
    mode: str,
    penalty: float | str,
    threshold: float | str | None,
    gamma: float,
    reward_range: tuple[float, float] | None = None,
) -> None:
    """Check ``uncertainty_mode``, ``uncertainty_penalty``, ``gamma`` and the threshold together (``ValueError``
    naming the value). ``gamma`` matters only to ``"terminate"``'s ``"auto"`` penalty; any discount in [0, 1] is
    accepted, and 1 only where that penalty stays finite: where ``reward_range`` (the real rewards' ``(low, high)``,
    ``None`` if not known yet) shows no negative reward. A penalty must fit in float32 (the dream's rewards)."""
    if not isinstance(mode, str) or mode not in UNCERTAINTY_MODES:
        raise ValueError(f"uncertainty_mode must be one of {UNCERTAINTY_MODES}, got {mode!r}")
    auto_penalty = isinstance(penalty, str) and penalty == "auto"
    if not auto_penalty and not (is_number(penalty) and 0 <= penalty <= _FLOAT32_MAX):
        raise ValueError(f"uncertainty_penalty must be 'auto' or a finite number >= 0 (at most {_FLOAT32_MAX:.3g}, "
                         f"float32's largest: the dream's rewards are float32), got {penalty!r}")  # fmt: skip
    if not auto_penalty and mode == "truncate":
        raise ValueError(f"uncertainty_penalty={penalty!r} has no effect with uncertainty_mode='truncate'; it is the "
                         "HALT penalty of 'terminate' or the per-step penalty of 'penalty'")  # fmt: skip
    gamma = check_number("gamma", gamma, 0.0, 1.0)
    if mode == "terminate" and threshold is None:
        raise ValueError("uncertainty_mode='terminate' halts imagined episodes at the cutoff, and "
                         "uncertainty_threshold=None turns the cutoff off: give uncertainty_threshold='auto' or a "
                         "number")  # fmt: skip
    if mode == "terminate" and auto_penalty and gamma == 1:
        if reward_range is None:
            raise ValueError("uncertainty_mode='terminate' with uncertainty_penalty='auto' and gamma=1: the HALT "
                             "penalty is the lowest real reward received forever, infinite as soon as a real reward "
                             "is negative, which is not known before training; give uncertainty_penalty as a "
                             "number")  # fmt: skip
        if reward_range[0] < 0:
            raise ValueError(f"uncertainty_mode='terminate' with uncertainty_penalty='auto' and gamma=1: the lowest "
                             f"real reward ({reward_range[0]:g}) received forever, undiscounted, is an infinite "
                             "penalty; give uncertainty_penalty as a number")  # fmt: skip
    if mode == "penalty" and (threshold is None or (not isinstance(threshold, str) and not 0 < threshold < math.inf)):
        raise ValueError(
            "uncertainty_mode='penalty' scales its penalty by the uncertainty threshold: give "
            f"uncertainty_threshold='auto' or a finite number > 0, not {threshold!r}"
        )


class Imagination:
    """Batched imagined env steps over an :class:`EnsembleDynamics`, with every argument checked up front.

    :param model: the fitted ensemble
    :param env_id: the real env's id, for ``"known"`` reward/termination functions
    :param start_states: real observations to start from (``K x *obs_shape``) or a :class:`TransitionBuffer`;
        default: the model's stored start states
    :param reward_fn: ``None`` (learned), an env id, ``"known"``, ``"module:function"``, or a callable
        ``(obs, action, next_obs) -> B``
    :param termination_fn: like ``reward_fn``; ``None`` uses the learned head, or never terminates without one
    :param uncertainty_threshold: ``None``, ``"auto"`` or a number >= 0, compared with the disagreement summed over
        each episode's last ``model.uncertainty_window`` steps
    :param uncertainty_mode: what the cutoff does: ``"truncate"``, ``"terminate"`` or ``"penalty"`` (see
        :data:`UNCERTAINTY_MODES`)
    :param uncertainty_penalty: ``"auto"`` or a number >= 0 in reward units. ``"terminate"``: subtracted from the
        reward of the step that halts; ``"auto"`` is the discounted worth of the lowest real reward received forever,
        never below 0: ``gamma * max(0, -r_min) / (1 - gamma)`` (0 where every real reward is >= 0: halting then
        forgoes them, as a real termination does). ``"penalty"``: the per-step penalty at the disagreement that,
        sustained over the window, reaches the threshold (it grows in proportion to the disagreement); ``"auto"`` is
        the real reward scale ``max(r_max - r_min, |r_max|, |r_min|)``
    :param gamma: the agent's discount, for ``"terminate"``'s ``"auto"`` penalty
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
        uncertainty_mode: str = "truncate",
        uncertainty_penalty: float | str = "auto",
        gamma: float = 0.99,
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
        if env_id is not None and not isinstance(env_id, str):
            raise ValueError(f"env_id must be None or a gymnasium env id, got {env_id!r}")
        self.env_id = env_id if env_id is not None else model.env_id
        spaces = (model.observation_space, model.action_space)  # another env's functions read another layout
        self.reward_fn = resolve_task_fn(reward_fn, KNOWN_REWARDS, "reward_fn", self.env_id, spaces, model.device)
        self.termination_fn = resolve_task_fn(
            termination_fn, KNOWN_TERMINATIONS, "termination_fn", self.env_id, spaces, model.device
        )
        self.uncertainty_threshold = resolve_threshold(uncertainty_threshold, model)
        if uncertainty_mode == "penalty" and uncertainty_threshold == "auto" and self.uncertainty_threshold == 0:
            raise ValueError("uncertainty_mode='penalty' needs a threshold > 0, and this model's 'auto' threshold is 0 "
                             "(an ensemble of one member has no disagreement); pass a number")  # fmt: skip
        resolve_uncertainty_mode(uncertainty_mode, uncertainty_penalty, self.uncertainty_threshold, gamma,
                                 model.reward_range)  # fmt: skip
        self.uncertainty_mode, self.gamma = uncertainty_mode, float(gamma)
        self.window = model.uncertainty_window  # steps the cutoff sums the disagreement over
        # What a step is worth where nothing is known: the lowest real reward (0 for a model that recorded none).
        self.lowest_reward = model.reward_range[0] if model.reward_range is not None else 0.0
        if model.reward_range is None and self.reward_fn is None:
            warnings.warn(
                "the model records no range of real rewards (a file from an earlier version): its learned rewards are "
                "not kept within the real ones, and a non-finite prediction is rewarded 0. Refit the model.",
                stacklevel=3,
            )
        self.uncertainty_penalty = self._penalty(uncertainty_penalty)
        if propagation not in ("ts1", "mean"):
            raise ValueError(f"propagation must be 'ts1' or 'mean', got {propagation!r}")
        self.propagation = propagation
        self.deterministic = check_bool("deterministic", deterministic)
        self.start_states = self._check_start_states(start_states)  # (K, obs_dim) on the model's device
        self._obs_low, self._obs_high = model.observation_bounds()

    def _penalty(self, value: float | str) -> float:
        if value != "auto":
            return float(value)
        low, high = self.model.reward_range if self.model.reward_range is not None else (0.0, 0.0)
        if self.uncertainty_mode == "terminate":
            return 0.0 if low >= 0 else min(self.gamma * -low / (1.0 - self.gamma), _FLOAT32_MAX)
        return max(high - low, abs(high), abs(low))

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
            states = torch.as_tensor(  # tensors too (check_observations detaches them)
                check_observations(self.model.observation_space, start_states, "start_states", read_values=False)
            )
        empty = states.numel() == 0  # (0, obs_dim) has no rows to reshape by
        if not empty:
            states = (states.reshape(len(states), -1) if states.ndim > 1 else states.reshape(1, -1)).float()
        if empty or states.shape[1] != obs_dim:
            raise ValueError(
                f"start_states must hold at least one observation of shape {self.model.observation_space.shape}, "
                f"got an array of shape {tuple(states.shape)}"
            )
        if not torch.isfinite(states).all():
            raise ValueError(f"start_states hold {int((~torch.isfinite(states)).any(1).sum())} non-finite row(s)")
        return states.to(self.model.device)

    def no_history(self, batch: int) -> torch.Tensor:
        """The ``recent`` disagreements of ``batch`` episodes that just started at real states: ``B x window`` zeros."""
        return torch.zeros((batch, self.window), device=self.model.device)

    @torch.no_grad()
    def step(
        self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator, recent: torch.Tensor | None = None
    ) -> ImaginedStep:
        """Imagine one env step for ``B`` rows: ``obs`` ``(B, obs_dim)``, raw ``action`` ``(B, ...)``, and
        ``recent`` ``(B, window)`` the disagreements of the episodes' previous steps (``ImaginedStep.recent`` of
        the last call; ``None``: episodes that start here)."""
        # the library's own tensors: the dream and DynaCallback check what users hand them where it enters
        model_step = self.model._step(obs, action, generator, self.propagation, self.deterministic)
        next_obs = model_step.next_obs
        reward, terminated = self.model.with_known_functions(
            obs, action, next_obs, model_step.reward, model_step.terminated, self.reward_fn, self.termination_fn
        )
        if self.reward_fn is not None:  # every row here is a live episode's step: a NaN is the function's, not ours
            check_finite_rewards(reward, obs, action, next_obs, "reward_fn", self.reward_fn)
        if terminated is None:
            terminated = torch.zeros(len(obs), dtype=torch.bool, device=obs.device)
        disagreement = model_step.disagreement
        nonfinite = ~(torch.isfinite(next_obs).all(-1) & torch.isfinite(reward) & torch.isfinite(disagreement))
        # A broken row is cut off, hands back its last finite observation, and is worth no more than the worst real
        # step.
        next_obs = torch.where(nonfinite[:, None], obs, torch.minimum(torch.maximum(next_obs, self._obs_low),
                                                                      self._obs_high))  # fmt: skip
        reward = torch.where(nonfinite, torch.full_like(reward, self.lowest_reward), reward)
        terminated = terminated & ~nonfinite
        disagreement = torch.where(nonfinite, torch.full_like(disagreement, math.inf), disagreement)
        recent = self.no_history(len(obs)) if recent is None else recent
        recent = torch.cat([recent[:, 1:], disagreement[:, None]], dim=1)  # (B, window): the oldest step drops out
        uncertainty = recent.sum(1)  # (B,) accumulated disagreement
        threshold = self.uncertainty_threshold
        cut_off = nonfinite if threshold is None else nonfinite | (uncertainty > threshold)
        if self.uncertainty_mode == "terminate":
            reward = torch.where(cut_off, reward - self.uncertainty_penalty, reward)
            return ImaginedStep(next_obs, reward, terminated | cut_off, torch.zeros_like(cut_off), cut_off,
                                nonfinite, uncertainty, disagreement, recent)  # fmt: skip
        if self.uncertainty_mode == "penalty":
            per_step = threshold / self.window  # the disagreement that, sustained over the window, reaches it
            scaled = torch.where(nonfinite, torch.zeros_like(disagreement), disagreement / max(per_step, 1e-12))
            # Unbounded in the disagreement, as MOPO's, but kept finite: a reward of -inf would reach the agent.
            reward = reward - (self.uncertainty_penalty * scaled).clamp(max=_FLOAT32_MAX)
        return ImaginedStep(next_obs, reward, terminated, cut_off, cut_off, nonfinite, uncertainty, disagreement,
                            recent)  # fmt: skip
