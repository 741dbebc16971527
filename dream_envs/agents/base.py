"""What dream-envs' own agents share with Stable-Baselines3's: the env as a 1-env VecEnv, ``learn`` with SB3
callbacks and logger, ``predict`` that ``evaluate_policy`` accepts, and atomic, safe ``save``/``load``.

The agents are where dream-envs meets SB3's conventions (its logger and callback contracts), so this module
imports SB3; ``import dream_envs`` itself does not import this package.
"""

from __future__ import annotations

import math
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback, ProgressBarCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import configure_logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize, unwrap_vec_normalize

from dream_envs.checks import check_int
from dream_envs.io import ModelFileError, load_torch_file, save_torch_file
from dream_envs.models.ensemble import FORMAT as ENSEMBLE_FORMAT
from dream_envs.spaces import space_from_dict, space_to_dict, spaces_equal

AGENT_FORMAT = "dream-envs/agent"
AGENT_FORMAT_VERSION = 1
_CALLABLE = "<callable: pass it to load()>"
# The entries every agent file holds (save() writes them all; num_timesteps is optional, as in the first files).
_ENTRIES = ("class", "hyperparams", "observation_space", "action_space", "state")


def wrap_env(env: gym.Env | VecEnv | str) -> VecEnv:
    """An env id, a gymnasium env or a VecEnv -> a VecEnv (with SB3's Monitor for episode statistics)."""
    if isinstance(env, str):
        env = gym.make(env)
    if isinstance(env, VecEnv):
        return env
    if not isinstance(env, gym.Env):
        raise TypeError(f"env must be a gymnasium Env, a VecEnv or an env id, got {type(env).__name__}")
    return DummyVecEnv([lambda: env if isinstance(env, Monitor) else Monitor(env)])


class ModelBasedAgent(ABC):
    """Base class: SB3's shape for agents that are not SB3 algorithms (tabular Dyna-Q, MPC, MuZero, ...).

    Subclasses set ``_hyperparams`` (the constructor arguments saved with the agent), implement
    ``_train(total_timesteps, callback)`` (the loop; it advances ``num_timesteps`` and calls ``callback.on_step()``
    after every real step), ``_predict(observations, deterministic)`` on a batch, ``_get_state()`` and
    ``_set_state(state)`` (tensors and plain values only, so that loading needs no pickle).

    :param env: the real env (an id, a gymnasium Env, or a VecEnv of one env)
    :param seed: seeds the agent's random generator and the env
    :param verbose: 1 prints SB3's log table
    :param tensorboard_log: folder for TensorBoard logs, or None: as SB3's agents do, each ``learn`` call writes into
        its own run folder ``<tensorboard_log>/<tb_log_name>_<n>`` (the same one again with
        ``reset_num_timesteps=False``); needs the ``tensorboard`` package

    Example::

        from dream_envs.agents import DynaQ  # a ModelBasedAgent

        agent = DynaQ("FrozenLake-v1", planning_steps=5, seed=0).learn(500)
        print(agent.num_timesteps, agent.predict(0, deterministic=True))
    """

    _hyperparams: ClassVar[tuple[str, ...]] = ()
    # Agents that act in several real envs at once (MuZero's batched self-play) set this to True.
    _vectorized: ClassVar[bool] = False

    def __init__(self, env: gym.Env | VecEnv | str, seed: int | None = None, verbose: int = 0,
                 tensorboard_log: str | None = None):  # fmt: skip
        self.env = wrap_env(env)
        if unwrap_vec_normalize(self.env) is not None:
            # SB3's off-policy agents keep VecNormalize's original observations; these agents keep what the env hands
            # them, which VecNormalize scales by statistics that keep moving (and known functions cannot read)
            raise ValueError(f"{type(self).__name__} fits its model on the real transitions it keeps, and VecNormalize "
                             "would hand it observations and rewards scaled by running statistics that keep moving: "
                             "pass the env without VecNormalize (the model normalises its own inputs)")  # fmt: skip
        if self.env.num_envs != 1 and not self._vectorized:
            raise ValueError(f"{type(self).__name__} learns from one env; got a VecEnv of {self.env.num_envs}")
        self.observation_space, self.action_space = self.env.observation_space, self.env.action_space
        seed = None if seed is None else check_int("seed", seed, minimum=0)  # numpy ints too; never True or -1
        tensorboard_log = _check_tensorboard_log(tensorboard_log)  # found here, not at the first learn()
        self.seed, self.verbose, self.tensorboard_log = seed, check_int("verbose", verbose, minimum=0), tensorboard_log
        self.rng = np.random.default_rng(seed)
        if seed is not None:
            self.env.seed(seed)
            self.action_space.seed(seed)
        self.num_timesteps = 0
        self.episodes = 0
        self.ep_info_buffer: deque = deque(maxlen=100)
        self._last_obs: np.ndarray | None = None
        self._logger: Logger | None = None
        self._custom_logger = False  # set_logger's logger is kept by learn(), as SB3 keeps it
        self._total_timesteps = 0
        self._start_time = time.time_ns()

    # ------------------------------------------------------------------ SB3's plumbing
    def get_env(self) -> VecEnv:
        return self.env

    def get_vec_normalize_env(self) -> VecNormalize | None:
        return unwrap_vec_normalize(self.env)

    @property
    def logger(self) -> Logger:
        """SB3's logger: ``learn`` makes a fresh one per call (stdout with ``verbose=1``, TensorBoard with
        ``tensorboard_log``) unless :meth:`set_logger` gave one; before the first ``learn``, a stdout-only one."""
        if self._logger is None:
            self._logger = configure_logger(self.verbose)
        return self._logger

    def set_logger(self, logger: Logger) -> None:
        """Use ``logger`` from now on, in every ``learn`` call too (SB3's ``set_logger``)."""
        self._logger, self._custom_logger = logger, True

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int = 10, tb_log_name: str | None = None,
              reset_num_timesteps: bool = True, progress_bar: bool = False) -> ModelBasedAgent:  # fmt: skip
        """Act in the real env for ``total_timesteps`` steps (stock SB3 callbacks, ``progress_bar`` and logger work).
        The arguments are SB3's ``learn``'s, in its order.

        :param total_timesteps: real steps
        :param callback: an SB3 ``BaseCallback``, a list of them, or a function ``(locals, globals) -> bool``
        :param log_interval: episodes between log dumps
        :param tb_log_name: the TensorBoard run's name: its folder is ``<tensorboard_log>/<tb_log_name>_<n>`` (default:
            the class name, e.g. ``MuZero``)
        :param reset_num_timesteps: False continues the step count and the current episode of an earlier call (and
            its TensorBoard run folder)
        :param progress_bar: show SB3's progress bar (tqdm + rich)
        """
        check_int("total_timesteps", total_timesteps)
        tb_log_name = type(self).__name__ if tb_log_name is None else tb_log_name
        if not isinstance(tb_log_name, str) or not tb_log_name:
            raise ValueError(f"tb_log_name must be a non-empty string (the TensorBoard run's name), got "
                             f"{tb_log_name!r}")  # fmt: skip
        if not self._custom_logger:
            self._logger = configure_logger(self.verbose, self.tensorboard_log, tb_log_name, reset_num_timesteps)
        if reset_num_timesteps:
            self.num_timesteps, self.episodes = 0, 0
        if reset_num_timesteps or self._last_obs is None:
            self._last_obs = self.env.reset()
        self._total_timesteps = int(total_timesteps) + self.num_timesteps
        self._log_interval, self._start_time, self._start_steps = log_interval, time.time_ns(), self.num_timesteps
        callback = self._init_callback(callback, progress_bar)
        callback.on_training_start(locals(), globals())
        self._train(self._total_timesteps, callback)
        callback.on_training_end()
        return self

    def _init_callback(self, callback: Any, progress_bar: bool) -> BaseCallback:
        if isinstance(callback, list):
            callback = CallbackList(callback)
        if not isinstance(callback, BaseCallback):
            callback = ConvertCallback(callback)
        if progress_bar:
            callback = CallbackList([callback, ProgressBarCallback()])
        callback.init_callback(self)
        return callback

    def _episode_done(self, info: dict[str, Any]) -> None:
        """Book-keeping at the end of a real episode (Monitor's statistics, SB3's log keys)."""
        self.episodes += 1
        if "episode" in info:
            self.ep_info_buffer.append(info["episode"])
        if self._log_interval and self.episodes % self._log_interval == 0:
            self._dump_logs()

    def _dump_logs(self) -> None:
        seconds = max((time.time_ns() - self._start_time) / 1e9, 1e-9)
        self.logger.record("time/episodes", self.episodes, exclude="tensorboard")
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", float(np.mean([e["r"] for e in self.ep_info_buffer])))
            self.logger.record("rollout/ep_len_mean", float(np.mean([e["l"] for e in self.ep_info_buffer])))
        self.logger.record("time/fps", int((self.num_timesteps - self._start_steps) / seconds))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)

    # ------------------------------------------------------------------ acting
    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:  # fmt: skip
        """Actions for one observation or a batch (SB3's signature, so ``evaluate_policy`` works).

        :param observation: one observation, or a batch with a leading env dimension
        :param state: unused (no recurrent state); returned as None
        :param episode_start: unused
        :param deterministic: the greedy action instead of the exploring one
        :return: ``(actions, None)``; one action for one observation
        """
        obs = np.asarray(observation)
        single = obs.shape == self.observation_space.shape
        batch = obs.reshape(1, *self.observation_space.shape) if single else obs
        if batch.shape[1:] != self.observation_space.shape:
            raise ValueError(f"observation of shape {obs.shape} does not fit the observation space "
                             f"{self.observation_space} (one observation, or a batch of them)")  # fmt: skip
        actions = self._predict(batch, deterministic)
        return (actions[0] if single else actions), None

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Save hyperparameters, spaces and learned state atomically (a failed write keeps the old file)."""
        payload = {
            "format": AGENT_FORMAT, "format_version": AGENT_FORMAT_VERSION, "class": type(self).__name__,
            # A callable (a custom reward function, say) cannot be loaded without running code: it is marked, and
            # load() asks for it again.
            "hyperparams": {name: _CALLABLE if callable(getattr(self, name)) else getattr(self, name)
                            for name in self._hyperparams},
            "observation_space": space_to_dict(self.observation_space),
            "action_space": space_to_dict(self.action_space), "num_timesteps": self.num_timesteps,
            "state": self._get_state(), "env_id": self._default_env_id(),
        }  # fmt: skip
        return save_torch_file(path, payload)

    def _default_env_id(self) -> str | None:
        """The registered id of the agent's env when ``gym.make(id)`` with no arguments remakes it (what
        :meth:`load` makes when given no env); None for an env made with other arguments or without ``gym.make``."""
        try:
            spec = self.env.get_attr("spec")[0]
        except AttributeError:  # a VecEnv of envs without a spec attribute: not made by gym.make
            return None
        try:
            registered = gym.spec(spec.id) if spec is not None else None
        except gym.error.Error:  # an id registered in another process, say
            return None
        if registered is None:
            return None

        def settings(kwargs: dict[str, Any] | None) -> dict[str, Any]:
            # render_mode changes only what is drawn; the agents that need frames (MuZero and WorldModels made
            # from an id) set it themselves when load() makes them from the id again
            return {name: value for name, value in (kwargs or {}).items() if name != "render_mode"}

        try:
            same = bool(settings(spec.kwargs) == settings(registered.kwargs))
        except (ValueError, TypeError):  # array-valued arguments: not comparable as a whole, so not assumed equal
            same = False
        return spec.id if same else None

    @classmethod
    def load(cls, path: str | os.PathLike, env: gym.Env | VecEnv | str | None = None, **kwargs: Any) -> ModelBasedAgent:
        """Load an agent saved by :meth:`save` safely (``weights_only=True``) onto ``env``.

        :param path: the file
        :param env: the env to go on with (its spaces must be the saved ones); ``None``: ``gym.make`` of the env id
            the agent was saved with, where its env was made by ``gym.make(id)`` with no other arguments
            (otherwise the id alone would make another env, and ``env=`` is asked for)
        :param kwargs: constructor arguments that replace the saved ones (e.g. ``seed``, ``verbose``)
        :raises ModelFileError: truncated, corrupted or foreign file, another agent class, or other spaces
        """
        payload = load_torch_file(path, AGENT_FORMAT, AGENT_FORMAT_VERSION, "dream-envs agent")
        source = repr(str(path))
        missing_entries = [key for key in _ENTRIES if key not in payload]
        if missing_entries:
            raise ModelFileError(f"{source} has no {', '.join(map(repr, missing_entries))} entry: the file is damaged "
                                 f"or was not written by {cls.__name__}.save")  # fmt: skip
        if payload["class"] != cls.__name__:
            raise ModelFileError(f"{source} holds a {payload['class']!r} agent, not a {cls.__name__}; "
                                 f"load it with {payload['class']}.load")  # fmt: skip
        hyperparams, state = payload["hyperparams"], payload["state"]
        for name, value in (("hyperparams", hyperparams), ("state", state)):
            if not isinstance(value, dict):
                raise ModelFileError(f"{source}: its {name!r} entry must be a dict, got {type(value).__name__}")
        # A name this class does not take is damage (or another version's file), never an argument to guess at;
        # a name the file lacks keeps the constructor's default, as for files saved before that argument existed.
        unknown = sorted(set(hyperparams) - set(cls._hyperparams), key=str)
        if unknown:
            raise ModelFileError(f"{source} holds hyperparameters {unknown} that {cls.__name__} does not take")
        missing = [k for k, v in hyperparams.items() if isinstance(v, str) and v == _CALLABLE and k not in kwargs]
        if missing:
            raise ValueError(f"{source} was saved with callables for {missing}, which are not stored; pass them "
                             f"again: {cls.__name__}.load(path, env, {missing[0]}=...)")  # fmt: skip
        non_finite = _non_finite(state, "state")
        if non_finite is not None:
            raise ModelFileError(f"{source} holds NaN/inf values in {non_finite}: the file is damaged or was saved "
                                 "from a diverged agent")  # fmt: skip
        try:
            saved_spaces = {name: space_from_dict(payload[f"{name}_space"]) for name in ("observation", "action")}
            num_timesteps = check_int("num_timesteps", payload.get("num_timesteps", 0), minimum=0)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ModelFileError(f"{source} has a damaged header ({type(error).__name__}: {error})") from error
        if env is None:
            env = payload.get("env_id")
            if not isinstance(env, str) or not env:
                raise ValueError(f"{source} does not name an env gym.make can remake (its env was made with other "
                                 f"arguments or without gym.make): pass env= to {cls.__name__}.load")  # fmt: skip
        agent = cls(env, **{**hyperparams, **kwargs})
        for name, space in (("observation", agent.observation_space), ("action", agent.action_space)):
            if not spaces_equal(saved_spaces[name], space):
                raise ModelFileError(f"{source} was saved for {name} space {saved_spaces[name]}; the env has {space}")
        try:
            agent._set_state(state)
        except ModelFileError as error:  # a nested file payload (MPCAgent's model) says itself what is wrong
            raise ModelFileError(f"{source}: {error}") from error
        except KeyError as error:
            raise ModelFileError(f"{source} has no entry {error} in its learned state: the file is damaged or "
                                 f"was not written by {cls.__name__}.save") from error  # fmt: skip
        except (TypeError, ValueError, RuntimeError, AttributeError, IndexError) as error:
            raise ModelFileError(f"{source} holds a state that does not fit its header ({error})") from error
        agent.num_timesteps = num_timesteps
        return agent

    # ------------------------------------------------------------------ subclasses
    @abstractmethod
    def _train(self, total_timesteps: int, callback: BaseCallback) -> None:
        """Act until ``num_timesteps`` reaches ``total_timesteps`` or a callback returns False."""

    @abstractmethod
    def _predict(self, observations: np.ndarray, deterministic: bool) -> np.ndarray:
        """Actions for a batch of observations."""

    @abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """The learned state as tensors and plain values (no pickled objects)."""

    @abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned."""


def _non_finite(value: Any, where: str) -> str | None:
    """Where in a saved state a float tensor or float holds NaN/inf (e.g. ``"state['q']"``), or None.

    A nested model payload is left to :meth:`EnsembleDynamics.from_payload`, which knows which of its values may be
    NaN (an uncalibrated threshold) and checks the rest.
    """
    if isinstance(value, torch.Tensor):
        finite = not value.is_floating_point() or bool(torch.isfinite(value).all())
        return None if finite else where
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        if value.get("format") == ENSEMBLE_FORMAT:
            return None
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{where}[{key!r}]")
        if found is not None:
            return found
    return None


def _check_tensorboard_log(tensorboard_log: Any) -> str | None:
    """``tensorboard_log`` as a string (a path is stored as one: agent files hold plain values), or ``None``; a
    ``ValueError`` for anything else, or for an existing file, found here rather than at ``learn``."""
    if tensorboard_log is None:
        return None
    if not isinstance(tensorboard_log, (str, os.PathLike)) or not os.fspath(tensorboard_log):
        raise ValueError(f"tensorboard_log must be None or a folder (a non-empty string or path) for TensorBoard "
                         f"logs, got {tensorboard_log!r}")  # fmt: skip
    folder = os.fspath(tensorboard_log)
    if not isinstance(folder, str):  # a bytes path
        raise ValueError(f"tensorboard_log must be a folder given as a string or path, got {tensorboard_log!r}")
    if os.path.isfile(folder):
        raise ValueError(f"tensorboard_log={folder!r} is a file; TensorBoard logs need a folder")
    return folder
