"""DreamEnv: one imagined episode over an EnsembleDynamics, as a real gymnasium Env."""

from __future__ import annotations

import difflib
import os
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding

from dream_envs.buffer import TransitionBuffer
from dream_envs.checks import check_int
from dream_envs.envs.imagination import Imagination
from dream_envs.envs.rendering import StateRenderer
from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.models.task_functions import TaskFn
from dream_envs.spaces import check_actions, check_observations, out_of_bounds_report, spaces_equal

__all__ = ["DreamEnv"]


class DreamEnv(gym.Env):
    """A gymnasium ``Env`` whose dynamics are an :class:`~dream_envs.EnsembleDynamics` ("a dream").

    Episodes start from real observed states and step through the learned model: each step is one forward
    pass of all ensemble members, a member is drawn per step (TS-1) and its Gaussian sampled. Reward and
    termination come from the model's learned heads unless known functions are given; a learned reward stays
    within the range of the real rewards the model was fitted on, and the observations are never clamped to a
    declared bound that real data crossed.

    ``info["disagreement"]`` is the ensemble disagreement of the step (the members' spread in standard deviations of
    each observation dimension's one-step change, worst dimension); ``info["uncertainty"]`` is that disagreement
    summed over the episode's last ``model.uncertainty_window`` steps (10 by default). Above
    ``uncertainty_threshold`` the uncertainty cutoff fires (``info["uncertainty_cutoff"] = True``) and
    ``uncertainty_mode`` says what happens:
    ``"truncate"`` ends the episode as truncated (the agent bootstraps from the uncertain state's value: optimistic),
    ``"terminate"`` ends it as terminated into MOReL's HALT state with ``uncertainty_penalty`` taken from the reward
    (pessimistic), ``"penalty"`` takes from every step's reward a penalty in proportion to its disagreement,
    ``uncertainty_penalty`` at the disagreement that, sustained over the window, reaches the threshold (MOPO), and
    truncates at the cutoff. A prediction that is NaN/inf fires the cutoff too and is never returned: the
    agent gets the last finite observation and the lowest real reward.

    :param model: a fitted :class:`EnsembleDynamics`, or ``None`` with ``model_path``
    :param model_path: file saved by :meth:`EnsembleDynamics.save` (what ``gym.make(..., model_path=)`` sets)
    :param env_id: id of the real env; when given the model's spaces must equal that env's, and it names the
        renderer and the known reward/termination functions (``reward_fn="known"``)
    :param start_states: real observations to start episodes from (``K x *obs_shape`` array, or a
        :class:`TransitionBuffer` whose episode starts are used); default: the start states stored in the model
    :param reward_fn: ``None`` (learned head), an env id, ``"known"`` (``env_id``'s), ``"module:function"``, or a
        callable ``(obs, action, next_obs) -> B`` on torch tensors
    :param termination_fn: like ``reward_fn``, for ``terminated``; ``None`` uses the learned head, or never
        terminates if the model learned none
    :param uncertainty_threshold: ``None`` (no cutoff), ``"auto"`` (calibrated at fit time on held-out real
        trajectories: the accumulated disagreement that best tells the 10-step rollouts whose error exceeds 0.1
        real standard deviations, see :attr:`EnsembleDynamics.cutoff_calibration`), or a number >= 0 (an
        accumulated disagreement)
    :param uncertainty_mode: ``"truncate"``, ``"terminate"`` or ``"penalty"``: what the cutoff does (above)
    :param uncertainty_penalty: ``"auto"`` or a number >= 0 in reward units (see
        :class:`~dream_envs.envs.imagination.Imagination` for the ``"auto"`` values)
    :param gamma: the agent's discount, which ``"terminate"``'s ``"auto"`` penalty assumes
    :param propagation: ``"ts1"`` (a random elite per step) or ``"mean"`` (elite mean)
    :param deterministic: use the predicted means instead of sampling the Gaussian heads
    :param render_mode: ``None`` or ``"rgb_array"`` (drawn by the real env, where it can draw a given state)
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``: where a model loaded from ``model_path`` runs (a given
        ``model`` stays on its own device)
    :param seed: seeds the env's random generator at construction (``reset(seed=)`` reseeds it)

    Example::

        import gymnasium as gym
        import dream_envs  # registers the Dream-* ids

        env = gym.make("Dream-CartPole-v0", uncertainty_threshold="auto", uncertainty_mode="truncate", seed=0)
        obs, info = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        print(info["uncertainty"], info["uncertainty_cutoff"])
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
        uncertainty_mode: str = "truncate",
        uncertainty_penalty: float | str = "auto",
        gamma: float = 0.99,
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

        self.imagination = Imagination(
            model, env_id=self.env_id, start_states=start_states, reward_fn=reward_fn, termination_fn=termination_fn,
            uncertainty_threshold=uncertainty_threshold, uncertainty_mode=uncertainty_mode,
            uncertainty_penalty=uncertainty_penalty, gamma=gamma, propagation=propagation, deterministic=deterministic,
        )  # fmt: skip
        self.uncertainty_threshold = self.imagination.uncertainty_threshold
        self.uncertainty_mode = self.imagination.uncertainty_mode
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self._renderer = StateRenderer(self.env_id) if render_mode == "rgb_array" else None

        self._generator = torch.Generator(device=model.device)
        self._state: torch.Tensor | None = None  # (1, obs_dim) on the model's device
        self._recent: torch.Tensor | None = None  # (1, window): the episode's last disagreements
        if seed is not None:  # gymnasium's own check takes Python ints only, and True
            self._np_random, self._np_random_seed = seeding.np_random(check_int("seed", seed, minimum=0))
            self._generator.manual_seed(int(self._np_random.integers(2**62)))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an imagined episode from a random real start state (or ``options["start_state"]``, one observation
        within the observation space; any other option key is refused)."""
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        start = start_state_option(self.observation_space, options, "DreamEnv")  # before anything changes
        super().reset(seed=seed)
        if seed is not None or self._state is None:
            self._generator.manual_seed(int(self.np_random.integers(2**62)))
        if start is not None:
            self._state = torch.as_tensor(start, device=self.model.device)
        else:
            starts = self.imagination.start_states
            index = int(self.np_random.integers(len(starts)))
            self._state = starts[index : index + 1].clone()
        self._recent = None  # a real state: nothing accumulated yet
        return self._obs(), {"uncertainty": 0.0, "disagreement": 0.0, "uncertainty_cutoff": False}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("DreamEnv.step() called before reset()")
        action_t = torch.as_tensor(check_actions(self.action_space, action, 1), device=self.model.device).reshape(1, -1)
        imagined = self.imagination.step(self._state, action_t, self._generator, self._recent)
        self._state, self._recent = imagined.next_obs, imagined.recent
        # One host sync per step: every scalar the agent needs comes over together.
        reward, terminated, truncated, cut_off, nonfinite, uncertainty, disagreement = (
            torch.stack(
                [
                    imagined.reward.float(),
                    imagined.terminated.float(),
                    imagined.truncated.float(),
                    imagined.cut_off.float(),
                    imagined.nonfinite.float(),
                    imagined.uncertainty.float(),
                    imagined.disagreement.float(),
                ]
            )[:, 0]
            .cpu()
            .tolist()
        )
        info = {"uncertainty": uncertainty, "disagreement": disagreement, "uncertainty_cutoff": bool(cut_off)}
        if nonfinite:
            info["model_nonfinite"] = True
        return self._obs(), reward, bool(terminated), bool(truncated), info

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


def start_state_option(space: gym.Space, options: Any, owner: str) -> np.ndarray | torch.Tensor | None:
    """The start state that reset ``options`` ask for (``{"start_state": obs}``), checked: one observation within the
    observation space, as an ``1 x obs_dim`` row; ``None`` when they ask for none (a random real start state).

    :param space: the observation space
    :param options: the ``options`` given to ``reset`` (``None`` or a dict)
    :param owner: the env's class name, for the messages
    :raises ValueError: for options that are not a dict, an unknown key (with the nearest valid one), or a start state
        of another shape, not finite, or outside a Box space
    """
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"options must be None or a dict such as {{'start_state': obs}}, got {options!r}")
    unknown = sorted(set(options or {}) - {"start_state"}, key=str)
    if unknown:  # a misspelt key would silently start from a random real state
        close = difflib.get_close_matches(str(unknown[0]), ["start_state"], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"reset options {unknown!r} are not known: {owner} takes 'start_state' only{hint}")
    if not options or "start_state" not in options:
        return None
    start = check_observations(space, options["start_state"], "options['start_state']")
    if len(start) != 1:
        raise ValueError(f"options['start_state'] must be one observation of shape {space.shape}, got a batch of "
                         f"{len(start)}")  # fmt: skip
    if isinstance(space, gym.spaces.Box):
        rows = start.cpu().numpy() if torch.is_tensor(start) else np.asarray(start)  # a tensor too
        outside = out_of_bounds_report(space, rows)
        if outside is not None:  # the first observation would lie outside the space the agent was promised
            index, row = min(outside[0]), rows[0]
            raise ValueError(
                f"options['start_state'] lies outside the observation space: its entry {index} is "
                f"{float(row[index])!r}, where the space allows {float(space.low.reshape(-1)[index])!r} "
                f"to {float(space.high.reshape(-1)[index])!r}"
            )
    return start
