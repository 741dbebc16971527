"""The PETS loop on a real env: collect, refit the ensemble, plan every action with MPC."""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from dream_envs.agents.base import ModelBasedAgent
from dream_envs.buffer import _FIELDS, TransitionBuffer
from dream_envs.checks import check_bool, check_int, check_keywords, check_number, seeded_generator
from dream_envs.models.calibration import CutoffCalibrationWarning
from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.models.task_functions import TaskFn, check_known_settings
from dream_envs.models.training import check_fit_kwargs
from dream_envs.planning.mpc import MPCPlanner, _episode_starts
from dream_envs.planning.optimizers import colored_noise
from dream_envs.planning.value import ModelValueFunction

__all__ = ["MPCAgent"]

# Two hidden layers of 128: every action is a planning run through the ensemble, 2.4x cheaper than 3 of 200, and
# enough for the PETS rows of docs/mpc.md. The fit is sized from the data (dream_envs.models.fit_schedule).
_DEFAULT_ENSEMBLE = {"ensemble_size": 5, "hidden_sizes": (128, 128)}


class MPCAgent(ModelBasedAgent):
    """PETS (Chua et al. 2018): act at random for ``learning_starts`` real steps, then fit a probabilistic ensemble
    and choose every action by model-predictive control (:class:`~dream_envs.planning.MPCPlanner`), refitting
    every ``train_freq`` real steps on everything seen so far.

    Reward and termination are learned by default; known ones can be given (``reward_fn="known"``). Discrete
    actions are planned with a categorical CEM, which mbrl-lib's PETS lacks.

    :param env: the real env (an id, a gymnasium Env, or a VecEnv of one env)
    :param optimizer: ``"auto"``, ``"cem"``, ``"mppi"`` or ``"categorical-cem"``
    :param horizon: planning horizon in model steps (a multiple of ``action_repeat``)
    :param population: candidate sequences per optimiser iteration
    :param iterations: optimiser iterations per action
    :param particles: particles per candidate (a multiple of the ensemble size)
    :param propagation: ``"ts1"``, ``"tsinf"`` or ``"expectation"``
    :param action_repeat: model steps each planned action is held for in the look-ahead (move blocking, see
        :class:`~dream_envs.planning.MPCPlanner`); the agent still plans at every real step
    :param gamma: discount of the planning objective (below 1 with ``terminal_value``)
    :param terminal_value: add the value of each plan's last state, learned in the model after every refit
        (:class:`~dream_envs.planning.ModelValueFunction`): a return beyond the horizon, for tasks whose failures
        build up slower than the horizon sees (CartPole's cart drifting off the track, docs/mpc.md). On by default:
        it took CartPole from 0/5 seeds to 5/5; it costs a value fit per refit, whatever the data's size: on one
        core, about 1 minute for CartPole (2 actions tried per state) and 4 for Pendulum (a Box: 16 sampled actions
        per state, ``value_kwargs={"action_samples": ...}``; docs/value_fit_time.md); ``mpc/value_fit_seconds``
        logs it
    :param value_kwargs: arguments of the :class:`~dream_envs.planning.ModelValueFunction` (its ``gamma``,
        ``reward_fn`` and ``termination_fn`` are the agent's)
    :param reward_fn: ``None`` (learned), an env id, ``"known"``, ``"module:function"`` or a callable
        ``(obs, action, next_obs) -> reward``
    :param termination_fn: like ``reward_fn``
    :param learning_starts: random real steps before the first fit
    :param random_noise_beta: colour of those random actions for Box action spaces: 0 draws each one uniformly and
        independently (white noise); 1 (pink) and 2 (red) correlate consecutive actions along the power spectrum
        ``1 / f**beta`` while each action stays uniform over the bounds, which drives systems such as a pendulum
        much further from where they start than white noise does (Eberhard et al. 2023, "Pink noise is all you
        need"); Discrete actions are always drawn uniformly
    :param train_freq: real steps between refits
    :param ensemble_kwargs: arguments of the :class:`~dream_envs.EnsembleDynamics` (default 5 members, 2 hidden
        layers of 128; every member is an elite unless ``num_elites`` is given, whatever the ``ensemble_size``)
    :param fit_kwargs: arguments of :meth:`~dream_envs.EnsembleDynamics.fit` (default: sized from the data by
        :func:`~dream_envs.models.fit_schedule`)
    :param optimizer_kwargs: further optimiser arguments (``elite_fraction``, ``alpha``, ``temperature``, ...)
    :param seed: seeds the model, the planner, the random phase and the env
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param verbose: 1 prints SB3's log table every ``log_interval`` episodes
    :param tensorboard_log: folder for TensorBoard logs (a string or a path), or None
    :raises ValueError: for any setting out of range or of the wrong kind, and unknown keys of ``ensemble_kwargs``,
        ``fit_kwargs``, ``value_kwargs`` or ``optimizer_kwargs``, all before the first real step

    Example::

        import gymnasium as gym
        from dream_envs.agents import MPCAgent

        # small and fast; MPCAgent("Pendulum-v1") is the product (its value fit takes minutes per refit)
        agent = MPCAgent("Pendulum-v1", horizon=5, population=32, iterations=2, particles=5, learning_starts=100,
                         train_freq=100, terminal_value=False, ensemble_kwargs={"hidden_sizes": (32, 32)},
                         fit_kwargs={"max_epochs": 3}, seed=0)
        agent.learn(150)
        print(agent.predict(gym.make("Pendulum-v1").reset(seed=0)[0]))
    """

    _hyperparams = ("optimizer", "horizon", "population", "iterations", "particles", "propagation", "action_repeat",
                    "gamma", "terminal_value", "value_kwargs", "reward_fn", "termination_fn", "learning_starts",
                    "random_noise_beta", "train_freq", "ensemble_kwargs", "fit_kwargs", "optimizer_kwargs", "seed",
                    "device", "verbose", "tensorboard_log")  # fmt: skip

    def __init__(
        self,
        env: gym.Env | VecEnv | str,
        optimizer: str = "auto",
        horizon: int = 15,
        population: int = 200,
        iterations: int = 3,
        particles: int = 5,
        propagation: str = "ts1",
        action_repeat: int = 1,
        gamma: float = 0.98,
        terminal_value: bool = True,
        value_kwargs: dict[str, Any] | None = None,
        reward_fn: str | TaskFn | None = None,
        termination_fn: str | TaskFn | None = None,
        learning_starts: int = 200,
        random_noise_beta: float = 1.0,
        train_freq: int = 200,
        ensemble_kwargs: dict[str, Any] | None = None,
        fit_kwargs: dict[str, Any] | None = None,
        optimizer_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        device: str = "auto",
        verbose: int = 0,
        tensorboard_log: str | None = None,
    ):
        # Every setting is checked before a real step is taken; the first fit needs 2 transitions.
        learning_starts = check_int("learning_starts (random steps before the first model fit)", learning_starts, 2)
        random_noise_beta = check_number("random_noise_beta", random_noise_beta, 0.0, 4.0)
        train_freq = check_int("train_freq", train_freq)
        terminal_value = check_bool("terminal_value", terminal_value)
        if terminal_value:
            gamma = check_number(
                "gamma (terminal_value=True, the default, needs a discount below 1: the value's size is 1 / (1 - "
                "gamma); pass terminal_value=False to plan undiscounted without a value)",
                gamma, 0.0, 1.0, low_open=True, high_open=True,
            )  # fmt: skip
        else:
            gamma = check_number("gamma", gamma, 0.0, 1.0, low_open=True)
        # As Python ints: a numpy int among the saved hyperparameters would not load with weights_only=True.
        horizon, population, iterations, action_repeat, particles = (
            check_int(name, value) for name, value in (("horizon", horizon), ("population", population),
                                                        ("iterations", iterations), ("action_repeat", action_repeat),
                                                        ("particles", particles))
        )  # fmt: skip
        ensemble_kwargs = check_keywords("ensemble_kwargs", ensemble_kwargs, EnsembleDynamics.__init__, {
            "observation_space": "the env's", "action_space": "the env's", "env_id": "the env's",
            "device": "pass MPCAgent(device=...)", "seed": "pass MPCAgent(seed=...)",
        })  # fmt: skip
        fit_kwargs = check_fit_kwargs(fit_kwargs, reserved={"seed": "the fits draw from MPCAgent(seed=...)"})
        # Checked whether or not terminal_value is on: a typo must not wait for the run that turns the value on.
        value_kwargs = check_keywords("value_kwargs", value_kwargs, ModelValueFunction.__init__, {
            "model": "the value uses the agent's model", "gamma": "the value uses the agent's gamma",
            "reward_fn": "the value uses the agent's reward_fn", "termination_fn": "the value uses the agent's "
            "termination_fn", "seed": "the value draws from MPCAgent(seed=...)",
        })  # fmt: skip
        # Its keys are checked against the optimiser's signature by the planner, made below before any real step;
        # the planner's own arguments (population, horizon, ...) are the agent's.
        if optimizer_kwargs is not None and (
            not isinstance(optimizer_kwargs, Mapping) or not all(isinstance(key, str) for key in optimizer_kwargs)
        ):
            raise ValueError(f"optimizer_kwargs must be a dict of keyword arguments of the optimiser, got "
                             f"{optimizer_kwargs!r}")  # fmt: skip
        own = sorted(set(optimizer_kwargs or ()) & set(inspect.signature(MPCPlanner.__init__).parameters))
        if own:
            raise ValueError(f"optimizer_kwargs may not set {own[0]!r}: pass {own[0]}= to MPCAgent itself")
        super().__init__(env, seed=seed, verbose=verbose, tensorboard_log=tensorboard_log)
        self.optimizer, self.horizon, self.population, self.iterations = optimizer, horizon, population, iterations
        self.particles, self.propagation, self.action_repeat = particles, propagation, action_repeat
        self.gamma, self.terminal_value, self.value_kwargs = gamma, terminal_value, value_kwargs
        self.reward_fn, self.termination_fn = reward_fn, termination_fn
        self.learning_starts, self.train_freq, self.device = learning_starts, train_freq, device
        self.random_noise_beta = float(random_noise_beta)
        self.ensemble_kwargs, self.fit_kwargs = dict(ensemble_kwargs or {}), dict(fit_kwargs or {})
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        spec = self.env.get_attr("spec")[0]
        check_known_settings(reward_fn, "reward_fn", spec)  # gymnasium's rule, for an env made with other settings
        check_known_settings(termination_fn, "termination_fn", spec)
        ensemble = {**_DEFAULT_ENSEMBLE, **self.ensemble_kwargs}
        ensemble.setdefault("num_elites", ensemble["ensemble_size"])  # every member, whatever the ensemble_size
        self.model = EnsembleDynamics(
            self.observation_space, self.action_space, env_id=spec.id if spec else None, device=device, seed=seed,
            **ensemble,
        )  # fmt: skip
        self._make_planner()
        self.buffer = TransitionBuffer(self.observation_space, self.action_space)
        self.model_fits, self._steps_since_fit, self._episode_start = 0, 0, True
        self._plan_seconds, self._plans = 0.0, 0
        self._random_steps, self._coloured = 0, np.empty(0)  # the random phase's coloured actions, made on demand

    def _make_planner(self) -> None:
        self.value = None
        if self.terminal_value:
            self.value = ModelValueFunction(self.model, self.gamma, self.reward_fn, self.termination_fn, seed=self.seed,
                                            **self.value_kwargs)  # fmt: skip
        self.planner = MPCPlanner(
            self.model, self.optimizer, self.horizon, self.population, self.iterations, self.particles,
            self.propagation, self.reward_fn, self.termination_fn, self.gamma, action_repeat=self.action_repeat,
            terminal_value=self.value, seed=self.seed, **self.optimizer_kwargs,
        )  # fmt: skip

    # ------------------------------------------------------------------ acting
    def _random_action(self) -> np.ndarray:
        """An action of the random phase: uniform, and coloured along time for Box actions when beta > 0."""
        if not (isinstance(self.action_space, spaces.Box) and self.random_noise_beta > 0):
            return np.asarray(self.action_space.sample())
        if self._random_steps % self.learning_starts == 0:  # one coloured sequence covers the whole random phase
            generator = seeded_generator(self.seed, stream=self._random_steps)  # seed None: fresh entropy
            noise = colored_noise(self.random_noise_beta, self.action_space.shape, self.learning_starts, generator)
            uniform = 0.5 * (1 + torch.erf(noise / 2**0.5))  # Gaussian -> uniform marginal, correlation kept
            low, high = self.action_space.low[..., None], self.action_space.high[..., None]
            self._coloured = (low + (high - low) * uniform.numpy()).astype(self.action_space.dtype)
        action = self._coloured[..., self._random_steps % self.learning_starts]
        self._random_steps += 1
        return action

    def _act(self, obs: np.ndarray) -> np.ndarray:
        if not bool(self.model.fitted):
            return np.asarray(self.action_space.sample())
        started = time.perf_counter()
        action = self.planner.plan(obs)
        self._plan_seconds += time.perf_counter() - started
        self._plans += 1
        return action.astype(self.action_space.dtype)

    @property
    def seconds_per_action(self) -> float:
        """Mean wall time of one MPC plan so far (0 before the first)."""
        return self._plan_seconds / self._plans if self._plans else 0.0

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:  # fmt: skip
        """Actions for one observation or a batch of envs' observations (SB3's signature, so ``evaluate_policy`` and
        ``EvalCallback`` work), each planned from that env's own warm start
        (:meth:`~dream_envs.planning.MPCPlanner.plan_batch`): batch index ``i`` goes on from the plan made for index
        ``i`` at the previous call, so envs planned together plan as well as each alone. These warm starts are apart
        from the training loop's; random actions until the model is first fitted.

        :param observation: one observation shaped like the space, or a batch with a leading env dimension
        :param state: unused (the warm starts are kept by the planner, per batch index); returned as None
        :param episode_start: one boolean per observation: True starts that env's plan afresh (a new episode);
            None continues every env's plan
        :param deterministic: unused: the plan comes from the optimiser's sampling, whose generators are seeded
        :return: ``(actions, None)``; one action for one observation
        :raises ValueError: for an observation of another shape than the space's (or a batch of them), one that is
            not numeric or holds NaN or +-inf, or an ``episode_start`` that is not one boolean per observation
        """
        obs = np.asarray(observation)
        shape = self.observation_space.shape
        single = obs.shape == shape
        batch = obs.reshape(1, *shape) if single else obs
        if batch.ndim != len(shape) + 1 or batch.shape[1:] != shape:
            raise ValueError(f"observation of shape {obs.shape} does not fit the observation space "
                             f"{self.observation_space} (one observation, or a batch of them)")  # fmt: skip
        if batch.dtype.kind not in "iuf" or not np.isfinite(batch).all():
            raise ValueError(f"observation must be finite numbers (no NaN or +-inf, which no model can plan from), got "
                             f"{observation!r}")  # fmt: skip
        if not bool(self.model.fitted):
            _episode_starts(episode_start, len(batch))  # still checked: the same call would fail once fitted
            samples = [self.action_space.sample() for _ in batch]
            actions = np.array(samples).reshape(len(batch), *self.action_space.shape)
        else:
            started = time.perf_counter()
            actions = self.planner.plan_batch(batch, episode_start)
            self._plan_seconds += time.perf_counter() - started
            self._plans += len(batch)
        actions = actions.astype(self.action_space.dtype)
        return (actions[0] if single else actions), None

    def _predict(self, observations: np.ndarray, deterministic: bool) -> np.ndarray:
        return self.predict(observations, deterministic=deterministic)[0]

    # ------------------------------------------------------------------ learning
    def _train(self, total_timesteps: int, callback: BaseCallback) -> None:
        while self.num_timesteps < total_timesteps:
            obs = self._last_obs
            actions = (self._act(obs[0]) if bool(self.model.fitted) else self._random_action())[None]
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += 1
            done, info = bool(dones[0]), infos[0]
            next_obs = info["terminal_observation"] if done else new_obs[0]
            truncated = done and info.get("TimeLimit.truncated", False)
            self.buffer.add(obs[0], actions[0], rewards[0], next_obs, done and not truncated, truncated,
                            self._episode_start)  # fmt: skip
            self._episode_start = done
            self._last_obs = new_obs
            self._steps_since_fit += 1
            due = not bool(self.model.fitted) or self._steps_since_fit >= self.train_freq
            if len(self.buffer) >= self.learning_starts and due:
                self._fit()
            callback.update_locals(locals())
            if not callback.on_step():
                return
            if done:
                self.planner.reset()
                self._episode_done(info)

    def _fit(self) -> None:
        started = time.perf_counter()
        seed = None if self.seed is None else self.seed + self.model_fits
        with warnings.catch_warnings():
            # the uncertainty cutoff is the dream's; a plan scores every particle whatever the disagreement
            warnings.simplefilter("ignore", CutoffCalibrationWarning)
            result = self.model.fit(self.buffer, seed=seed, **self.fit_kwargs)
        self.model_fits, self._steps_since_fit = self.model_fits + 1, 0
        self.logger.record("mpc/model_train_loss", result.train_loss[-1])
        if result.holdout_loss:
            self.logger.record("mpc/model_holdout_loss", result.holdout_loss[-1])
        self.logger.record("mpc/model_fit_seconds", time.perf_counter() - started)
        if self.value is not None:
            started = time.perf_counter()
            data = self.buffer.transitions()
            value_fit = self.value.fit(data.obs, data.reward)
            self.logger.record("mpc/value_loss", value_fit.losses[-1])
            self.logger.record("mpc/value_mean", value_fit.mean_values[-1])
            self.logger.record("mpc/value_fit_seconds", time.perf_counter() - started)
        if self._plans:
            self.logger.record("mpc/seconds_per_action", self.seconds_per_action)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, Any]:
        data = self.buffer.transitions()
        buffer = {name: torch.from_numpy(np.ascontiguousarray(getattr(data, name))) for name in _FIELDS}
        state = {"model": self.model.to_payload(), "model_fits": self.model_fits, "buffer": buffer}
        if self.value is not None and self.value.fitted:
            state["value"] = self.value.state_dict()
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        self.model = EnsembleDynamics.from_payload(state["model"], self.observation_space, self.action_space,
                                                   self.device, source="the saved agent's model")  # fmt: skip
        self._make_planner()
        if self.value is not None and "value" in state:
            self.value.load_state_dict(state["value"])
        self.model_fits = int(state["model_fits"])
        self.buffer = TransitionBuffer(self.observation_space, self.action_space)
        data = {name: value.numpy() for name, value in state["buffer"].items()}
        if len(data["obs"]):
            self.buffer.add(*(data[name] for name in _FIELDS))
