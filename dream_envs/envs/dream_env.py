"""DreamEnv: one imagined episode over an EnsembleDynamics, as a real gymnasium Env."""

from __future__ import annotations

import math
import os
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding

from dream_envs.buffer import TransitionBuffer
from dream_envs.envs.rendering import StateRenderer
from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.models.task_functions import KNOWN_REWARDS, KNOWN_TERMINATIONS, TaskFn, resolve_task_fn
from dream_envs.spaces import spaces_equal

__all__ = ["DreamEnv", "resolve_threshold"]


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


class DreamEnv(gym.Env):
    """A gymnasium ``Env`` whose dynamics are an :class:`~dream_envs.EnsembleDynamics` ("a dream").

    Episodes start from real observed states and step through the learned model: each step is one forward
    pass of all ensemble members, a member is drawn per step (TS-1) and its Gaussian sampled. Reward and
    termination come from the model's learned heads unless known functions are given. ``info`` carries the
    ensemble disagreement as ``"uncertainty"``; above ``uncertainty_threshold`` the episode is TRUNCATED (not
    terminated) with ``info["uncertainty_truncated"] = True``. A prediction that is NaN/inf truncates the
    episode the same way and is never returned: the agent gets the last finite observation.

    :param model: a fitted :class:`EnsembleDynamics`, or ``None`` with ``model_path``
    :param model_path: file saved by :meth:`EnsembleDynamics.save` (what ``gym.make(..., model_path=)`` sets)
    :param env_id: id of the real env; when given the model's spaces must equal that env's, and it names the
        renderer and the known reward/termination functions (``reward_fn="known"``)
    :param start_states: real observations to start episodes from (``K x *obs_shape`` array, or a
        :class:`TransitionBuffer` whose episode starts are used); default: the start states stored in the model
    :param reward_fn: ``None`` (learned head), an env id, ``"known"`` (``env_id``'s), or a callable
        ``(obs, action, next_obs) -> B`` on torch tensors
    :param termination_fn: like ``reward_fn``, for ``terminated``; ``None`` uses the learned head, or never
        terminates if the model learned none
    :param uncertainty_threshold: ``None`` (no cutoff), ``"auto"`` (derived from holdout errors), or a number >= 0
    :param propagation: ``"ts1"`` (a random elite per step) or ``"mean"`` (elite mean)
    :param deterministic: use the predicted means instead of sampling the Gaussian heads
    :param render_mode: ``None`` or ``"rgb_array"`` (drawn by the real env, where it can draw a given state)
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"`` (where the model runs)
    :param seed: seeds the env's random generator at construction (``reset(seed=)`` reseeds it)

    Example::

        import gymnasium as gym
        import dream_envs  # registers the Dream-* ids

        env = gym.make("Dream-CartPole-v0", uncertainty_threshold="auto", seed=0)
        obs, info = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        print(info["uncertainty"], info["uncertainty_truncated"])
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        model: EnsembleDynamics | None = None,
        model_path: str | os.PathLike | None = None,
        env_id: str | None = None,
        start_states: np.ndarray | TransitionBuffer | None = None,
        reward_fn: str | TaskFn | None = None,
        termination_fn: str | TaskFn | None = None,
        uncertainty_threshold: float | str | None = None,
        propagation: str = "ts1",
        deterministic: bool = False,
        render_mode: str | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
    ):
        super().__init__()
        if (model is None) == (model_path is None):
            raise ValueError(
                "DreamEnv needs exactly one of model= (an EnsembleDynamics) or model_path= (a saved model file); "
                f"got model={type(model).__name__ if model is not None else None}, model_path={model_path!r}"
            )
        real_spaces = _real_env_spaces(env_id) if env_id is not None else (None, None)
        if model is None:
            if not os.path.isfile(model_path):
                raise FileNotFoundError(f"model_path={str(model_path)!r} does not exist or is not a file")
            model = EnsembleDynamics.load(model_path, *real_spaces, device=device)
        elif not isinstance(model, EnsembleDynamics):
            raise TypeError(f"model must be an EnsembleDynamics, got {type(model).__name__}")
        elif env_id is not None:
            for name, real, mine in zip(
                ("observation", "action"), real_spaces, (model.observation_space, model.action_space)
            ):
                if not spaces_equal(real, mine):
                    raise ValueError(f"model {name} space {mine} differs from {env_id}'s {real}")
        self.model = model
        self.env_id = env_id if env_id is not None else model.env_id
        self.observation_space = model.observation_space
        self.action_space = model.action_space

        self.reward_fn = resolve_task_fn(self._known(reward_fn, "reward_fn"), KNOWN_REWARDS, "reward_fn")
        self.termination_fn = resolve_task_fn(
            self._known(termination_fn, "termination_fn"), KNOWN_TERMINATIONS, "termination_fn"
        )
        self.uncertainty_threshold = resolve_threshold(uncertainty_threshold, model)
        if propagation not in ("ts1", "mean"):
            raise ValueError(f"propagation must be 'ts1' or 'mean', got {propagation!r}")
        self.propagation = propagation
        self.deterministic = bool(deterministic)
        self._start_states = self._check_start_states(start_states)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self._renderer = StateRenderer(self.env_id) if render_mode == "rgb_array" else None

        low = torch.as_tensor(self.observation_space.low.reshape(-1), device=model.device)
        high = torch.as_tensor(self.observation_space.high.reshape(-1), device=model.device)
        self._obs_low, self._obs_high = low, high
        self._generator = torch.Generator(device=model.device)
        self._state: torch.Tensor | None = None  # (1, obs_dim) on the model's device
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
            self._generator.manual_seed(int(self._np_random.integers(2**62)))

    def _known(self, value: Any, what: str) -> Any:
        if value == "known":
            if self.env_id is None:
                raise ValueError(f"{what}='known' needs env_id= (or a model saved with an env_id)")
            return self.env_id
        return value

    def _check_start_states(self, start_states: Any) -> torch.Tensor:
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
        states = states.reshape(len(states), -1).float() if states.ndim > 1 else states.reshape(-1, self.model.obs_dim)
        if len(states) == 0 or states.shape[1] != self.model.obs_dim:
            raise ValueError(
                f"start_states must hold at least one observation of shape {self.observation_space.shape}, "
                f"got an array of shape {tuple(states.shape)}"
            )
        if not torch.isfinite(states).all():
            raise ValueError(f"start_states hold {int((~torch.isfinite(states)).any(1).sum())} non-finite row(s)")
        return states.to(self.model.device)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an imagined episode from a random real start state (or ``options["start_state"]``)."""
        super().reset(seed=seed)
        if seed is not None or self._state is None:
            self._generator.manual_seed(int(self.np_random.integers(2**62)))
        if options and "start_state" in options:
            start = np.asarray(options["start_state"], np.float32)
            if start.size != self.model.obs_dim or not np.isfinite(start).all():
                raise ValueError(
                    f"options['start_state'] must be a finite observation of shape {self.observation_space.shape}, "
                    f"got {start!r}"
                )
            self._state = torch.as_tensor(start.reshape(1, -1), device=self.model.device)
        else:
            index = int(self.np_random.integers(len(self._start_states)))
            self._state = self._start_states[index : index + 1].clone()
        return self._obs(), {"uncertainty": 0.0, "uncertainty_truncated": False}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("DreamEnv.step() called before reset()")
        action_t = torch.as_tensor(np.asarray(action), device=self.model.device).reshape(1, -1)
        imagined = self.model.step(
            self._state,
            action_t,
            generator=self._generator,
            propagation=self.propagation,
            deterministic=self.deterministic,
        )
        next_obs = imagined.next_obs
        reward = self.reward_fn(self._state, action_t, next_obs) if self.reward_fn else imagined.reward
        if self.termination_fn is not None:
            terminated = self.termination_fn(self._state, action_t, next_obs)
        elif imagined.terminated is not None:
            terminated = imagined.terminated
        else:
            terminated = torch.zeros(1, dtype=torch.bool, device=self.model.device)
        # One host sync per step: every scalar the agent needs comes over together.
        finite = (
            torch.isfinite(next_obs).all() & torch.isfinite(reward).all() & torch.isfinite(imagined.uncertainty).all()
        )
        scalars = (
            torch.stack(
                [
                    finite.float(),
                    reward.reshape(()).float(),
                    terminated.reshape(()).float(),
                    imagined.uncertainty.reshape(()).float(),
                ]
            )
            .cpu()
            .tolist()
        )
        is_finite, reward_value, is_terminated, uncertainty = scalars
        if not is_finite:
            # The model broke down: end the episode as a truncation and hand back the last finite observation.
            info = {"uncertainty": math.inf, "uncertainty_truncated": True, "model_nonfinite": True}
            return self._obs(), 0.0, False, True, info
        self._state = torch.minimum(torch.maximum(next_obs, self._obs_low), self._obs_high)
        over = self.uncertainty_threshold is not None and uncertainty > self.uncertainty_threshold
        info = {"uncertainty": uncertainty, "uncertainty_truncated": over}
        return self._obs(), reward_value, bool(is_terminated), over, info

    def _obs(self) -> np.ndarray:
        return self._state.reshape(self.observation_space.shape).cpu().numpy().astype(self.observation_space.dtype)

    def render(self) -> np.ndarray | None:
        if self._renderer is None:
            return None
        if self._state is None:
            raise RuntimeError("DreamEnv.render() called before reset()")
        return self._renderer.render(self._obs())

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def _real_env_spaces(env_id: str) -> tuple[gym.spaces.Space, gym.spaces.Space]:
    """The spaces of the real env ``env_id``, with gymnasium's own "did you mean" error for unknown ids."""
    real = gym.make(env_id)
    try:
        return real.observation_space, real.action_space
    finally:
        real.close()
