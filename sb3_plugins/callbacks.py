"""DynaCallback: one callback that makes stock SB3 agents learn from a model's imagination as well as reality."""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.common.vec_env import VecNormalize

from dream_envs import EnsembleConfig, EnsembleDynamics, TransitionBuffer
from dream_envs.checks import check_int, check_keywords, check_number, check_probability, is_number
from dream_envs.envs.imagination import Imagination, check_threshold, resolve_uncertainty_mode
from dream_envs.models.calibration import CutoffCalibrationWarning
from dream_envs.models.task_functions import (
    KNOWN_REWARDS,
    KNOWN_TERMINATIONS,
    TaskFn,
    check_known_settings,
    resolve_task_fn,
)
from dream_envs.models.training import ModelFitError, check_fit_kwargs
from dream_envs.spaces import check_observation_space, check_sb3_action_space, spaces_equal
from sb3_plugins.dream_vec_env import DreamVecEnv
from sb3_plugins.model_trust import TRUSTED_ERROR, UNTRUSTED_ERROR, ModelTrust, model_trust, valid_trust_bounds
from sb3_plugins.replay import ImaginedReplay, MixedReplayBuffer
from sb3_plugins.value_bound import bounded_targets, real_reward_extremes, target_network_names, value_range

__all__ = ["DynaCallback"]

DREAM_ROUND_STEPS = 32  # steps per dream env in one on-policy dream round (rl-zoo's CartPole PPO collects 32)

_DEFAULT_ENSEMBLE = {"ensemble_size": 5, "hidden_sizes": (200, 200, 200)}


def _ensemble_settings(ensemble_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The new model's settings: the defaults, the user's keys, and (unless given) every member but one an elite.

    The elites follow the ``ensemble_size`` the user chose, so ``{"ensemble_size": 3}`` alone is valid (2 elites).
    """
    settings = {**_DEFAULT_ENSEMBLE, **(ensemble_kwargs or {})}
    if "num_elites" not in settings:
        size = check_int("ensemble_size", settings["ensemble_size"])  # named here, before the arithmetic
        settings["num_elites"] = max(1, size - 1)
    return settings


class _Silent(BaseCallback):
    """The callback handed to SB3's own ``collect_rollouts`` when it gathers imagined data: it does nothing."""

    def _on_step(self) -> bool:
        return True


class DynaCallback(BaseCallback):
    """Interleave real and imagined experience in unchanged Stable-Baselines3 training (Dyna / MBPO).

    ``Algo("MlpPolicy", real_env).learn(n, callback=DynaCallback())``: the callback records every real
    transition, refits an :class:`~dream_envs.EnsembleDynamics` on them, and feeds the agent imagined experience
    from real states. ``num_timesteps`` keeps counting REAL steps only; imagined steps are counted and logged
    separately.

    - Refits: at ``min_real_steps``, then every ``model_train_freq`` real steps, sooner while the data are few
      (``refit_growth``).
    - Off-policy (DQN, SAC, TD3): MBPO. At every refit, ``rollout_batch_size`` branches per ``model_train_freq``
      real steps since the last one, of ``rollout_horizon`` steps, start from real states and follow the current
      policy; the agent's ``train()`` then samples batches that are ``real_ratio`` real, the rest imagined, with
      ``utd_ratio`` gradient steps per real step in all: the agent's own ``gradient_steps`` (never changed) plus
      extra ``train()`` calls at the end of each rollout.
    - On-policy (PPO, A2C): at every refit (mid-rollout when the agent's rollout is longer) the agent runs
      ``dream_rollouts`` extra rounds per ``model_train_freq`` real steps of its own ``collect_rollouts`` +
      ``train()`` on a :class:`DreamVecEnv` of ``n_dream_envs`` envs started at real states (uncertainty cutoff on),
      so its optimiser, schedules and logger are the stock ones.
    - Before ``learning_starts`` (off-policy), the agent is trained on the mixed buffer after every refit, at the
      rate it trains at afterwards: SB3 waits for enough data, and the imagined branches are that data.
    - DQN and its kin (QR-DQN) sync their target network by env steps: their extra gradient steps run in pieces of
      as many steps as the stock agent takes towards one target, with a sync after each, so that ``utd_ratio``
      buys Bellman backups and not more steps towards one frozen target. Those many backups let ``max``-bootstrapped
      values run past any return the rewards allow, so during the extra steps the target network's values are
      clipped to that range (``value_bound``, :mod:`sb3_plugins.value_bound`).
    - When ``learn`` ends, an off-policy agent samples all-real batches again: a later plain ``learn()`` (or a
      checkpoint of the agent) trains the stock agent with its own settings.
    - Do no harm (:mod:`sb3_plugins.model_trust`): every refit measures the model's holdout error (1 - R^2 of the
      observation change and of the learned reward) and scales the imagined share of the updates by a trust in
      [0, 1]: the imagined fraction of batches and the extra gradient steps (off-policy), the dream rounds
      (on-policy). A model no better than the mean is not used; ``trust_reason`` and ``dyna/model_trust`` say why.

    Logged under ``dyna/``: model train/holdout loss, model-fit wall time and gradient steps, the model's holdout
    errors and trust, the real ratio and gradient steps (off-policy) or dream rounds (on-policy) it led to, imagined
    steps, mean imagined rollout length, fraction of imagined episodes truncated by uncertainty, real steps.

    :param dynamics: the dynamics model to train (an :class:`~dream_envs.EnsembleDynamics`; SB3's ``model`` is the
        agent); default: a new one for the env's spaces (``ensemble_kwargs``), kept as :attr:`dynamics`
    :param ensemble_kwargs: arguments of the new :class:`EnsembleDynamics`; default: 5 members of 3 hidden layers
        of 200, every member but one an elite unless ``num_elites`` is given (MBPO, Janner et al. 2019: 7 and 5)
    :param fit_kwargs: arguments of :meth:`EnsembleDynamics.fit` (``max_epochs``, ``patience``, ...); default:
        sized from the data by :func:`~dream_envs.models.fit_schedule` (a budget of gradient steps, smaller for the
        refits, which continue from the previous weights)
    :param reward_fn: ``None`` (learned), an env id, ``"known"``, ``"module:function"`` or a callable, as in
        :class:`DreamVecEnv`
    :param termination_fn: like ``reward_fn``
    :param env_id: the real env's id for ``"known"`` functions; default: the training env's spec id
    :param uncertainty_threshold: the cutoff of imagined rollouts (``"auto"``, a number >= 0, or ``None``), as in
        :class:`~dream_envs.DreamEnv`
    :param uncertainty_mode: what the cutoff does to an imagined rollout: ``"truncate"`` (it ends; off-policy
        branches store the step as non-terminal, on-policy dream episodes bootstrap), ``"terminate"`` (MOReL's HALT:
        the step is stored as terminal, its reward lowered by ``uncertainty_penalty``) or ``"penalty"`` (MOPO: every
        imagined reward is lowered in proportion to the disagreement; truncated at the cutoff)
    :param uncertainty_penalty: ``"auto"`` or a number >= 0 in reward units, as in :class:`~dream_envs.DreamEnv`
        (``"terminate"``'s ``"auto"`` uses the agent's own ``gamma``)
    :param model_train_freq: real steps between model refits (and, on-policy, dream updates), whatever the
        agent's rollout length (sooner while the data are few: ``refit_growth``)
    :param min_real_steps: real transitions needed before the first fit, which comes as soon as they are there
    :param refit_growth: refit sooner than ``model_train_freq`` while the data are few: once they have grown by this
        fraction of what the last fit saw (0.5: at 64, 96, 144, 216, 324, 486 and 729 real steps, then every 250). A
        number > 0, or ``None`` to refit every ``model_train_freq`` real steps only (MBPO as published). The
        imagined data per real step stay the same, shared out over the early refits: ``rollout_batch_size`` MBPO
        branches (off-policy) and ``dream_rollouts`` dream rounds (on-policy) per ``model_train_freq`` real steps
    :param rollout_horizon: imagined branch length, an int, or ``(start_step, end_step, min_h, max_h)`` for MBPO's
        linear schedule over real steps (from ``min_h`` up to ``max_h``); default 10 off-policy, 100 on-policy
        (there the dream episodes' time limit, past which they are truncated and bootstrapped)
    :param rollout_batch_size: branches started per ``model_train_freq`` real steps, at the refits (off-policy)
    :param real_ratio: fraction of real transitions in each off-policy training batch, in [0, 1] (0.5: measured best
        on CartPole DQN and Pendulum SAC; MBPO used 0.05)
    :param utd_ratio: off-policy gradient steps per real step, whether the agent's ``train_freq`` counts steps or
        episodes (``None``: the agent's own setting)
    :param value_bound: DQN and its kin: during the callback's extra gradient steps, clip the target network's values
        to ``[min(0, r_min), max(0, r_max)] / (1 - gamma)`` over the real rewards seen, the range of every
        discounted return (:mod:`sb3_plugins.value_bound`); ``dyna/target_values_clipped`` logs the share it clipped.
        Without it rl-zoo's CartPole DQN's mean max-Q reached 1,473 (no return exceeds 100) by 3,000 real steps
        (seed 3, ``benchmarks/dqn_values.py``)
    :param imagined_capacity: imagined transitions kept (off-policy)
    :param n_dream_envs: imagined envs per on-policy dream rollout
    :param dream_rollouts: on-policy update rounds in the dream per ``model_train_freq`` real steps; a round is
        ``n_dream_envs`` x ``min(n_steps, 32)`` imagined steps from fresh real start states, then one ``train()``.
        An on-policy agent moves only so far per ``train()`` (PPO's clip range and epochs), so for the same imagined
        steps more and smaller rounds learn faster: 20 rounds of 128 envs, against 10 of 256, stayed solved (with the
        fixed refit period) in a median of 752 real steps instead of 1,000 on CartPole PPO and 256 instead of 512 on
        Acrobot PPO, in less wall time
        (``docs/benchmarks.md``; 40 rounds of 64 lost a CartPole seed). A2C, whose ``train()`` is one gradient step
        on the whole round, did better with the larger rounds on CartPole (3 seeds: first passes at 3,256-3,504 real
        steps with 10 of 256, none within 5,000 with 20 of 128, stock A2C 8,000-8,752)
    :param trust_errors: ``(trusted, untrusted)`` holdout errors (1 - R^2): the model is fully trusted at or below
        the first, not used at or above the second, linearly between (:mod:`sb3_plugins.model_trust`); ``None``
        always trusts it fully (MBPO as published)
    :param seed: seeds the model, rollout starts and sampling
    :param verbose: 1 prints a line per model fit
    :param unknown: nothing: an unknown keyword is refused with the nearest valid ones, and the renamed ``model``
        and ``dream_envs`` with their new names

    Example::

        import gymnasium as gym
        from stable_baselines3 import PPO
        from sb3_plugins import DynaCallback

        agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=64, seed=0)
        dyna = DynaCallback(model_train_freq=64, fit_kwargs={"max_epochs": 20}, ensemble_kwargs={"hidden_sizes": (32,)},
                            n_dream_envs=4, seed=0)
        agent.learn(128, callback=dyna)
        print(agent.num_timesteps, dyna.imagined_steps, dyna.trust_reason)  # 128 real steps; imagined ones apart
    """

    def __init__(
        self,
        dynamics: EnsembleDynamics | None = None,
        ensemble_kwargs: dict[str, Any] | None = None,
        fit_kwargs: dict[str, Any] | None = None,
        reward_fn: str | TaskFn | None = None,
        termination_fn: str | TaskFn | None = None,
        env_id: str | None = None,
        uncertainty_threshold: float | str | None = "auto",
        uncertainty_mode: str = "truncate",
        uncertainty_penalty: float | str = "auto",
        model_train_freq: int = 250,
        min_real_steps: int = 64,
        refit_growth: float | None = 0.5,
        rollout_horizon: int | tuple[int, int, int, int] | None = None,
        rollout_batch_size: int = 400,
        real_ratio: float = 0.5,
        utd_ratio: int | None = 10,
        value_bound: bool = True,
        imagined_capacity: int = 100_000,
        n_dream_envs: int = 128,
        dream_rollouts: int = 20,
        trust_errors: tuple[float, float] | None = (TRUSTED_ERROR, UNTRUSTED_ERROR),
        seed: int | None = None,
        verbose: int = 0,
        **unknown: Any,
    ):
        _refuse_unknown_settings(unknown)
        super().__init__(check_int("verbose", verbose, minimum=0))
        # Every setting is checked here, before learn() spends a real step (issue 15).
        if dynamics is not None and not isinstance(dynamics, EnsembleDynamics):
            raise TypeError(f"dynamics must be an EnsembleDynamics or None, got {type(dynamics).__name__}")
        real_ratio = check_probability("real_ratio", real_ratio)
        if refit_growth is not None:
            refit_growth = check_number("refit_growth (None: refit every model_train_freq real steps)", refit_growth,
                                        0.0, low_open=True)  # fmt: skip
        sizes = {
            "model_train_freq": model_train_freq, "min_real_steps": min_real_steps,
            "rollout_batch_size": rollout_batch_size, "imagined_capacity": imagined_capacity,
            "n_dream_envs": n_dream_envs, "dream_rollouts": dream_rollouts,
        }  # fmt: skip
        (model_train_freq, min_real_steps, rollout_batch_size, imagined_capacity, n_dream_envs, dream_rollouts) = (
            check_int(name, value) for name, value in sizes.items()
        )
        if min_real_steps < 2:  # a fit holds one transition out and trains on the rest
            raise ValueError(
                f"min_real_steps must be >= 2 (a model fit needs 2 real transitions), got {min_real_steps}"
            )
        if utd_ratio is not None:
            utd_ratio = check_int("utd_ratio (None: the agent's own gradient steps)", utd_ratio)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        if not isinstance(value_bound, (bool, np.bool_)):
            raise ValueError(f"value_bound must be True or False, got {value_bound!r}")
        ensemble_kwargs = check_keywords("ensemble_kwargs", ensemble_kwargs, EnsembleDynamics.__init__, {
            "observation_space": "the training env's", "action_space": "the training env's",
            "env_id": "pass DynaCallback(env_id=...)", "device": "the agent's device is used",
            "seed": "pass DynaCallback(seed=...)",
        })  # fmt: skip
        ensemble_settings = _ensemble_settings(ensemble_kwargs)
        EnsembleConfig(**ensemble_settings)  # checks the values
        fit_kwargs = check_fit_kwargs(fit_kwargs, reserved={"seed": "the fits draw from DynaCallback(seed=...)"})
        for name, value, known in (("reward_fn", reward_fn, KNOWN_REWARDS),
                                   ("termination_fn", termination_fn, KNOWN_TERMINATIONS)):  # fmt: skip
            if value != "known":  # "known" needs the env id, which the training env gives at learn()
                resolve_task_fn(value, known, name)
        if env_id is not None and not isinstance(env_id, str):
            raise ValueError(f"env_id must be None or a gymnasium env id, got {env_id!r}")
        self._horizon_schedule = None if rollout_horizon is None else _check_horizon(rollout_horizon)
        if trust_errors is not None:
            if isinstance(trust_errors, np.ndarray):
                trust_errors = tuple(trust_errors.tolist())
            if not (isinstance(trust_errors, (tuple, list)) and len(trust_errors) == 2
                    and valid_trust_bounds(*trust_errors)):  # fmt: skip
                raise ValueError(f"trust_errors must be None or a pair (trusted, untrusted) of finite holdout errors "
                                 f"with 0 <= trusted < untrusted, e.g. (0.1, 0.5); got {trust_errors!r}")  # fmt: skip
            trust_errors = (float(trust_errors[0]), float(trust_errors[1]))
        self.trust_errors = trust_errors
        check_threshold(uncertainty_threshold)
        resolve_uncertainty_mode(uncertainty_mode, uncertainty_penalty, uncertainty_threshold, gamma=0.99)
        self.dynamics = dynamics
        self.ensemble_kwargs = ensemble_settings
        self.fit_kwargs = dict(fit_kwargs or {})
        self.reward_fn, self.termination_fn, self.env_id = reward_fn, termination_fn, env_id
        self.uncertainty_threshold = uncertainty_threshold
        self.uncertainty_mode, self.uncertainty_penalty = uncertainty_mode, uncertainty_penalty
        self.model_train_freq = model_train_freq
        self.min_real_steps = min_real_steps
        self.refit_growth = refit_growth
        self.rollout_batch_size = rollout_batch_size
        self.real_ratio = float(real_ratio)
        self.utd_ratio = utd_ratio
        self.value_bound = bool(value_bound)
        self.imagined_capacity = imagined_capacity
        self.n_dream_envs = n_dream_envs
        self.dream_rollouts = dream_rollouts
        self.seed = seed
        self.real = None  # TransitionBuffer of every real transition seen
        self.imagined_steps = 0
        self.model_fits = 0
        self.trust, self.trust_reason = 1.0, "not fitted yet"
        self._steps_since_fit = 0
        self._pre_start_steps = 0
        self._extra_steps = 0  # off-policy: gradient steps per rollout beyond the agent's own
        self._rollout_steps = 0  # real steps of the agent's rollout so far
        self._last_rollout_steps = 0  # and of its last whole rollout (train_freq in episodes: they vary)
        self._dqn_steps_since_sync = 0
        self._rng = np.random.default_rng(seed)
        self._seeded = seed is not None  # else the agent's seed, at the first learn()
        self._torch_generator: torch.Generator | None = None
        self._imagined: ImaginedReplay | None = None
        self._vec_normalize: VecNormalize | None = None
        self._kind: str | None = None  # "off-policy" or "on-policy" once it has served an agent
        # set by _init_callback; False until then, so a start check_agent refused ends without touching the agent
        # (rl-zoo calls on_training_end in a `finally` after such a refusal)
        self._off_policy = False
        # what save() writes and load() passes back to the constructor
        self._settings = {
            "ensemble_kwargs": dict(ensemble_kwargs), "fit_kwargs": dict(fit_kwargs), "reward_fn": reward_fn,
            "termination_fn": termination_fn, "env_id": env_id, "uncertainty_threshold": uncertainty_threshold,
            "uncertainty_mode": uncertainty_mode, "uncertainty_penalty": uncertainty_penalty,
            "model_train_freq": model_train_freq, "min_real_steps": min_real_steps, "refit_growth": refit_growth,
            "rollout_horizon": self._horizon_schedule, "rollout_batch_size": rollout_batch_size,
            "real_ratio": self.real_ratio, "utd_ratio": utd_ratio, "value_bound": self.value_bound,
            "imagined_capacity": imagined_capacity,
            "n_dream_envs": n_dream_envs, "dream_rollouts": dream_rollouts, "trust_errors": trust_errors,
            "seed": seed, "verbose": self.verbose,
        }  # fmt: skip

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike) -> Path:
        """Save everything this callback has learned and where it is, atomically, for a resumed ``learn(...,
        reset_num_timesteps=False)`` that goes on exactly as if it had never stopped: the settings, the dynamics
        model, the real transitions, the imagined replay (off-policy), the counters and the random generators. The
        agent and its replay buffer are saved by SB3 (``model.save``, ``save_replay_buffer``, or
        :class:`~sb3_plugins.checkpoint.DynaCheckpointCallback` for all three).

        :param path: the file (a ``.pt`` torch file, loaded with ``weights_only=True``)
        :raises ValueError: for a callable ``reward_fn``/``termination_fn`` (code is not saved): pass it again to
            :meth:`load`
        """
        from sb3_plugins.checkpoint import save_dyna_state

        return save_dyna_state(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto", **settings: Any) -> DynaCallback:
        """A callback restored from :meth:`save`'s file, to pass to the restored agent's ``learn(...,
        reset_num_timesteps=False)``.

        :param path: the file
        :param device: where the dynamics model and imagined replay go (the agent's device)
        :param settings: constructor arguments that replace the saved ones (e.g. a callable ``reward_fn``, or
            ``verbose``)
        :raises ModelFileError: a damaged, foreign or inconsistent file
        """
        from sb3_plugins.checkpoint import load_dyna_state

        return load_dyna_state(cls, path, device, settings)

    # ------------------------------------------------------------------ set-up
    def check_agent(self, algo: BaseAlgorithm) -> None:
        """Check that this callback can serve ``algo`` (its class, env, action space and discount against the
        callback's settings and model) without changing either: ``learn`` does it before its first real step, and a
        caller that builds runs ahead (the benchmark's plan) can do it earlier.

        :raises TypeError: for an algorithm DynaCallback cannot serve
        :raises ValueError: for a setting that does not fit the agent or its env, naming it
        """
        if not isinstance(algo, (OnPolicyAlgorithm, OffPolicyAlgorithm)):
            raise TypeError(
                f"DynaCallback serves SB3's on-policy (PPO, A2C, sb3-contrib's TRPO...) and off-policy (DQN, SAC, TD3, "
                f"sb3-contrib's TQC, CrossQ, QRDQN...) algorithms and their subclasses; {type(algo).__name__} is "
                "neither (it collects and learns its own way, e.g. ARS)"
            )
        if hasattr(algo, "_last_lstm_states"):
            raise TypeError(
                f"DynaCallback cannot serve {type(algo).__name__}: a recurrent policy's updates need its LSTM states "
                "along each sequence, which imagined branches started from single real states do not have"
            )
        if "action_masks" in inspect.signature(algo.policy.predict).parameters:
            raise TypeError(
                f"DynaCallback cannot serve {type(algo).__name__}: an action-masking policy needs each state's valid "
                "actions, which the env gives for real states and the model does not predict for imagined ones"
            )
        # The agent's own discount enters the "terminate" mode's auto penalty.
        resolve_uncertainty_mode(
            self.uncertainty_mode, self.uncertainty_penalty, self.uncertainty_threshold, algo.gamma
        )
        check_sb3_action_space(algo.action_space, "DynaCallback")
        check_observation_space(algo.observation_space)  # a Discrete or Dict observation: named before any step
        kind = "off-policy" if isinstance(algo, OffPolicyAlgorithm) else "on-policy"
        if self._kind is not None and self._kind != kind:
            raise ValueError(f"this DynaCallback served an {self._kind} agent (its branches, replay and schedules are "
                             f"one kind's), and {type(algo).__name__} is {kind}: use a new DynaCallback")  # fmt: skip
        if self.dynamics is not None:
            for name, mine, agents in (("observation", self.dynamics.observation_space, algo.observation_space),
                                       ("action", self.dynamics.action_space, algo.action_space)):  # fmt: skip
                if not spaces_equal(mine, agents):
                    raise ValueError(
                        f"DynaCallback's dynamics model has the {name} space {mine}, the agent's env {agents}: a "
                        "model fitted for another env cannot be trained on this one"
                    )
        env_id = self.env_id if self.env_id is not None else _env_id(algo.get_env())
        spec = algo.get_env().get_attr("spec")[0] if algo.get_env() is not None else None
        for name, value, known in (("reward_fn", self.reward_fn, KNOWN_REWARDS),
                                   ("termination_fn", self.termination_fn, KNOWN_TERMINATIONS)):  # fmt: skip
            # gymnasium's rule, for an env made with other settings or wrapped (named before the spaces it changed)
            check_known_settings(value, name, spec)
            # "known" for an env without a known function, or another env's function for this one's spaces; a
            # user's function tried on the device the model will run on (that of the agent, unless given one)
            device = self.dynamics.device if self.dynamics is not None else algo.device
            resolve_task_fn(value, known, name, env_id, (algo.observation_space, algo.action_space), device)

    def _init_callback(self) -> None:
        algo: BaseAlgorithm = self.model
        self.check_agent(algo)
        if not self._seeded and getattr(algo, "seed", None) is not None:
            # rl-zoo's --seed (and any seeded agent) reaches the callback: the same run gives the same records
            self.seed = check_int("the agent's seed", algo.seed, minimum=0)
            self._rng, self._seeded = np.random.default_rng(self.seed), True
        if self.env_id is None:
            self.env_id = _env_id(self.training_env)
        if self.dynamics is None:
            self.dynamics = EnsembleDynamics(
                algo.observation_space, algo.action_space, env_id=self.env_id, device=algo.device, seed=self.seed,
                **self.ensemble_kwargs,
            )  # fmt: skip
        if self.dynamics.config.ensemble_size == 1 and self.uncertainty_threshold is not None:
            warnings.warn("DynaCallback: an ensemble of one member has no disagreement, so the uncertainty cutoff "
                          "never fires; use ensemble_size >= 2", CutoffCalibrationWarning, stacklevel=2)  # fmt: skip
        if self.real is None:  # kept across learn() calls, like the agent's own replay buffer
            self.real = TransitionBuffer(algo.observation_space, algo.action_space)
        self._torch_generator = torch.Generator(device=self.dynamics.device)
        self._torch_generator.manual_seed(int(self._rng.integers(2**62)))
        self._off_policy = isinstance(algo, OffPolicyAlgorithm)
        self._kind = "off-policy" if self._off_policy else "on-policy"
        # DQN and its kin (QR-DQN): epsilon-greedy, with a target network synced every target_update_interval env
        # steps, which the extra gradient steps must respect (see _train_agent)
        self._epsilon_greedy = self._off_policy and _is_epsilon_greedy(algo)
        if self._horizon_schedule is None:
            # Measured on CartPole (docs/benchmarks.md): short branches for MBPO, whole 100-step dream
            # episodes for on-policy updates.
            self._horizon_schedule = _check_horizon(10 if self._off_policy else 100)
        self._box_actions = isinstance(algo.action_space, spaces.Box)
        if self._off_policy:
            if isinstance(algo.replay_buffer, MixedReplayBuffer):
                mixed = algo.replay_buffer
                if self._imagined is not mixed.imagined:
                    # another callback's imagination came from another model: start afresh, at this one's capacity
                    mixed.imagined = self._new_imagined_replay(mixed.real)
                self._imagined = mixed.imagined  # a second learn() call of this callback keeps what it imagined
            else:
                if len(self.real) == 0 and algo.replay_buffer.size() > 0:
                    warnings.warn(
                        f"DynaCallback: the agent's replay buffer holds {algo.replay_buffer.size()} transitions that "
                        "this new callback has not seen; its model learns from the real steps of this learn() on. To "
                        "go on with the model and data of an earlier callback, load its state (DynaCallback.load)",
                        stacklevel=2,
                    )
                # A fresh agent, or a replay buffer loaded with load_replay_buffer (which holds the real data only):
                # this callback's own imagination, if it has one, goes on.
                if self._imagined is None:
                    self._imagined = self._new_imagined_replay(algo.replay_buffer)
                self._imagined.to(algo.device)
                algo.replay_buffer = MixedReplayBuffer(algo.replay_buffer, self._imagined, self.real_ratio, algo.gamma)
            self._apply_trust(self.trust)

    def _new_imagined_replay(self, real_buffer: Any) -> ImaginedReplay:
        try:
            return ImaginedReplay(
                self.imagined_capacity, real_buffer.obs_shape, real_buffer.actions.shape[2:],
                torch.as_tensor(real_buffer.actions[:1]).dtype, self.model.device,
                seed=int(self._rng.integers(2**62)),
            )  # fmt: skip
        except (RuntimeError, MemoryError) as error:  # the allocator's own words name no setting
            size = self.imagined_capacity * (2 * self.dynamics.obs_dim + 2) * 4
            raise ValueError(
                f"imagined_capacity={self.imagined_capacity:,} needs about {size / 2**30:.1f} GiB for its "
                f"rows, which could not be allocated ({error}); lower imagined_capacity"
            ) from None

    def _on_training_end(self) -> None:
        # A later plain learn() trains the stock agent: real batches only (its gradient steps were never changed).
        if self._off_policy:
            self.model.replay_buffer.real_ratio = 1.0

    def _on_training_start(self) -> None:
        # SB3 keeps the first observation only there; the model learns from raw observations (VecNormalize keeps them)
        self._vec_normalize = self.model.get_vec_normalize_env()
        first = self.model._last_obs if self._vec_normalize is None else self._vec_normalize.get_original_obs()
        self._prev_obs = np.array(first, copy=True)
        # SB3 resets the envs only when learn(reset_num_timesteps=True) (or on the first call): otherwise the agent
        # continues the episodes it was in, and its own flags say which observation starts one.
        starts = getattr(self.model, "_last_episode_starts", None)
        self._episode_start = (
            np.array(starts, dtype=bool, copy=True) if starts is not None else np.ones(self.training_env.num_envs, bool)
        )

    # ------------------------------------------------------------------ real data
    def _on_step(self) -> bool:
        self._record_real_step()
        self._steps_since_fit += self.training_env.num_envs
        self._rollout_steps += self.training_env.num_envs
        # Refits go by real steps, not by the agent's rollout length: an on-policy agent collecting 2,048 or 4,096
        # real steps per rollout gets dream updates every model_train_freq of them, mid-rollout (the real steps
        # already stored keep the log-probabilities of the policy that took them, which PPO's ratio needs).
        if self._refit_due():
            since, self._steps_since_fit = self._steps_since_fit, 0
            self._fit_model()
            if self.trust == 0.0:  # do no harm: nothing is imagined until a refit earns some trust
                if not self._off_policy:
                    self.logger.record("dyna/dream_rollouts", 0)
                return True
            if self._off_policy:
                self._branch_rollouts(since)
                self._train_before_learning_starts()
            else:
                self._dream_updates(since)
        return True

    def _refit_due(self) -> bool:
        """Whether the model is refitted now: at ``min_real_steps``, then every ``model_train_freq`` real steps, or
        sooner while the data are few, once they have grown by ``refit_growth`` of what the last fit saw (64, 96,
        144, 216... real steps at the defaults): early on each new real step changes the model most, and a policy
        trained in the dream of a model fitted on half the data it could use waits a whole ``model_train_freq``
        for the next one."""
        seen = len(self.real)
        if seen < self.min_real_steps:
            return False
        period = self.model_train_freq
        if self.refit_growth is not None:
            # real steps are counted since the start, so before the first fit "the last fit saw" nothing
            period = min(period, max(1, int(self.refit_growth * (seen - self._steps_since_fit))))
        return self._steps_since_fit >= period

    def _record_real_step(self) -> None:
        # SB3 exposes a step's results to callbacks only as the collection loop's locals.
        new_obs, rewards, dones, infos = (self.locals[k] for k in ("new_obs", "rewards", "dones", "infos"))
        actions = self.locals["clipped_actions"] if "clipped_actions" in self.locals else self.locals["actions"]
        normalize = self._vec_normalize
        if normalize is not None:  # the model learns the env's own units: VecNormalize keeps the raw step
            new_obs, rewards = normalize.get_original_obs(), normalize.get_original_reward()
        next_obs = np.array(new_obs, copy=True)
        truncated = np.zeros(len(dones), dtype=bool)
        for i in np.flatnonzero(dones):  # only finished envs carry their true last observation in infos
            terminal = infos[i]["terminal_observation"]
            # VecNormalize normalises it in place with the statistics of this very step: undone with the same ones
            next_obs[i] = terminal if normalize is None else normalize.unnormalize_obs(terminal)
            truncated[i] = infos[i].get("TimeLimit.truncated", False)
        self.real.add(self._prev_obs, actions, rewards, next_obs, dones & ~truncated, truncated, self._episode_start)
        self._prev_obs = np.array(new_obs, copy=True)
        self._episode_start = np.array(dones, dtype=bool)

    def _fit_model(self) -> None:
        started = time.perf_counter()
        with warnings.catch_warnings():
            # The first fits hold too little data to calibrate the cutoff on; the threshold used is logged instead.
            warnings.simplefilter("ignore", CutoffCalibrationWarning)
            try:
                result = self.dynamics.fit(self.real, seed=int(self._rng.integers(2**31)), **self.fit_kwargs)
            except ModelFitError as error:  # the model is as it was: do no harm, train on real data alone
                self._apply_trust(0.0)
                self.trust_reason = f"the model fit diverged, the agent trains on real data alone: {error}"
                self.logger.record("dyna/model_trust", 0.0)
                warnings.warn(f"DynaCallback: {self.trust_reason}", stacklevel=2)
                return
        self.model_fits += 1
        self.logger.record("dyna/uncertainty_threshold", result.auto_threshold)
        self.logger.record("dyna/model_train_loss", result.train_loss[-1])
        if result.holdout_loss:
            self.logger.record("dyna/model_holdout_loss", result.holdout_loss[-1])
        self.logger.record("dyna/model_fit_seconds", time.perf_counter() - started)
        self.logger.record("dyna/model_gradient_steps", result.gradient_steps)
        self.logger.record("dyna/real_steps", self.num_timesteps)
        if self.trust_errors is None:
            verdict = ModelTrust(1.0, float("nan"), float("nan"), "trust_errors=None: the model is always trusted")
        else:
            verdict = model_trust(result.holdout_error_per_output[:-1], result.reward_error, self.reward_fn is None,
                                  *self.trust_errors)  # fmt: skip
        self._apply_trust(verdict.trust)
        self.trust_reason = verdict.reason
        self.logger.record("dyna/model_trust", verdict.trust)
        self.logger.record("dyna/model_holdout_obs_error", verdict.obs_error)
        self.logger.record("dyna/model_holdout_reward_error", verdict.reward_error)
        if self.verbose:
            print(f"DynaCallback: model fit {self.model_fits} on {len(self.real)} real steps, {result.epochs} epochs "
                  f"({result.gradient_steps} gradient steps); {verdict.reason}")  # fmt: skip

    def _apply_trust(self, trust: float) -> None:
        """Scale the imagined share of the agent's updates by ``trust`` (:mod:`sb3_plugins.model_trust`)."""
        self.trust = float(trust)
        if self._off_policy:
            algo: OffPolicyAlgorithm = self.model
            real_ratio = 1.0 - (1.0 - self.real_ratio) * self.trust
            algo.replay_buffer.real_ratio = real_ratio
            self.logger.record("dyna/real_ratio", real_ratio)
            if algo.train_freq.unit.value == "step":  # rollouts of as many real steps each time
                # The agent's own gradient steps stay as the user set them; the extra ones run in _on_rollout_end.
                self._extra_steps = self._extra_steps_for(self._rollout_real_steps())
                self.logger.record("dyna/gradient_steps", self._own_steps_per_rollout() + self._extra_steps)

    def _dream_rounds(self, real_steps: int) -> int:
        """Dream rounds after a refit ``real_steps`` after the last: ``dream_rollouts`` per ``model_train_freq``
        real steps (the early refits of ``refit_growth`` spread the same dreaming over fresher models), scaled by the
        trust in the model."""
        return int(round(self.dream_rollouts * self.trust * self._period_share(real_steps)))

    def _period_share(self, real_steps: int) -> float:
        """The part of a ``model_train_freq`` period that ``real_steps`` since the last refit make: the imagined data
        of the early refits (``refit_growth``) are this share of a period's."""
        return min(1.0, real_steps / self.model_train_freq)

    def _imagination(self, start_states: np.ndarray) -> Imagination:
        return Imagination(start_states=start_states, **self._dream_kwargs())

    def _dream_kwargs(self) -> dict[str, Any]:
        """What the imagined rollouts are made of, the same for MBPO branches and on-policy dream envs."""
        return {
            "model": self.dynamics, "env_id": self.env_id, "reward_fn": self.reward_fn,
            "termination_fn": self.termination_fn, "uncertainty_threshold": self.uncertainty_threshold,
            "uncertainty_mode": self.uncertainty_mode, "uncertainty_penalty": self.uncertainty_penalty,
            "gamma": self.model.gamma,
        }  # fmt: skip

    def rollout_horizon(self) -> int:
        """The current imagined branch length (MBPO's schedule over real steps, or the fixed value)."""
        start, end, low, high = self._horizon_schedule
        progress = np.clip((self.model.num_timesteps - start) / max(end - start, 1), 0.0, 1.0)
        return int(round(low + progress * (high - low)))

    # ------------------------------------------------------------------ off-policy: MBPO branches
    def _train_before_learning_starts(self) -> None:
        """SB3 starts an off-policy agent's updates after ``learning_starts`` real steps (rl-zoo's CartPole DQN:
        1,000), to have enough data first; the imagined branches are that data, so the agent trains on them from
        the first fit on, at the rate it trains at after ``learning_starts`` (``utd_ratio`` scaled by the trust; its
        actions stay uniform random until ``learning_starts``, as SB3 does)."""
        algo: OffPolicyAlgorithm = self.model
        since, self._pre_start_steps = algo.num_timesteps - self._pre_start_steps, algo.num_timesteps
        if algo.num_timesteps > algo.learning_starts or since <= 0:
            return
        rollout = self._rollout_real_steps()
        per_real_step = self._own_steps(rollout) / rollout + self._extra_steps_for(rollout) / rollout
        gradient_steps = int(round(per_real_step * since))
        if gradient_steps:
            self._train_agent(gradient_steps)
            self.logger.record("dyna/pre_learning_gradient_steps", gradient_steps)

    def _on_rollout_end(self) -> None:
        real_steps, self._rollout_steps = self._rollout_steps, 0
        if not self._off_policy:
            return
        self._last_rollout_steps = real_steps
        algo = self.model
        trains = bool(self.model_fits) and self.trust > 0 and algo.num_timesteps > algo.learning_starts
        if algo.train_freq.unit.value != "step":  # whole episodes: utd_ratio per real step of this rollout's
            self._extra_steps = self._extra_steps_for(real_steps)
            if trains:
                self.logger.record("dyna/gradient_steps", self._own_steps(real_steps) + self._extra_steps)
        if self._extra_steps and trains:
            self._train_agent(self._extra_steps)

    def _train_agent(self, gradient_steps: int) -> None:
        """``gradient_steps`` of the agent's own ``train()``. DQN syncs its target network by env steps, so a burst
        of extra gradient steps between two real steps would all chase one frozen target (one Bellman backup per
        rollout, however many steps): the extra steps are cut into pieces of as many gradient steps as the stock
        agent takes towards one target, with a sync after each whole piece (a part piece carries over); their
        bootstrapped values are clipped to the range the rewards allow (``value_bound``)."""
        algo = self.model
        if not self._epsilon_greedy:
            algo.train(gradient_steps=gradient_steps, batch_size=algo.batch_size)
            return
        bound = value_range(real_reward_extremes(algo), algo.gamma) if self.value_bound else None
        clipped = seen = 0
        piece = self._dqn_steps_per_target()
        while gradient_steps > 0:
            steps = min(piece - self._dqn_steps_since_sync, gradient_steps)
            with bounded_targets(algo, *bound) if bound else contextlib.nullcontext([]) as bounded:
                algo.train(gradient_steps=steps, batch_size=algo.batch_size)
            clipped += sum(target.clipped for target in bounded)
            seen += sum(target.seen for target in bounded)
            gradient_steps -= steps
            self._dqn_steps_since_sync += steps
            if self._dqn_steps_since_sync >= piece:
                for online, target in _target_networks(algo):  # DQN's q_net, QR-DQN's quantile_net...
                    polyak_update(online.parameters(), target.parameters(), algo.tau)
                if hasattr(algo, "batch_norm_stats_target"):
                    polyak_update(algo.batch_norm_stats, algo.batch_norm_stats_target, 1.0)
                self._dqn_steps_since_sync = 0
        if seen:
            self.logger.record("dyna/target_values_clipped", clipped / seen)

    def _own_steps_per_rollout(self) -> int:
        """The agent's own gradient steps per rollout of ``train_freq`` (SB3's -1: as many as env steps collected)."""
        return self._own_steps(self._rollout_real_steps())

    def _own_steps(self, real_steps: int) -> int:
        """The agent's own gradient steps after a rollout of ``real_steps`` (SB3's -1: as many)."""
        own = self.model.gradient_steps
        return real_steps if own < 0 else own

    def _rollout_real_steps(self) -> int:
        """Real steps of one rollout: ``train_freq`` env steps on each env, or where it counts whole episodes (their
        lengths vary), the last rollout's (before one has ended: the current one's so far)."""
        algo = self.model
        if algo.train_freq.unit.value == "step":
            return algo.train_freq.frequency * algo.n_envs
        return max(1, self._last_rollout_steps or self._rollout_steps)

    def _extra_steps_for(self, real_steps: int) -> int:
        """Gradient steps beyond the agent's own after a rollout of ``real_steps``: ``utd_ratio`` per real step in
        all, the part beyond the agent's own scaled by the trust (none with ``utd_ratio=None``)."""
        if self.utd_ratio is None:
            return 0
        return max(0, int(round((self.utd_ratio * real_steps - self._own_steps(real_steps)) * self.trust)))

    def _dqn_steps_per_target(self) -> int:
        """Gradient steps the stock DQN takes towards one target: its burst per rollout when it syncs more often
        than it trains (rl-zoo's CartPole: 128 steps after 256 env steps, a sync every 10), else its steps per env
        step times the env steps between syncs (SB3's default: 0.25 x 10,000 = 2,500)."""
        algo = self.model
        if algo.train_freq.unit.value != "step":  # rollouts of whole episodes: one step per env step, as SB3's -1
            return max(1, algo.target_update_interval)
        per_rollout = self._own_steps_per_rollout()
        per_env_step = per_rollout / (algo.train_freq.frequency * algo.n_envs)
        return max(1, per_rollout, int(round(per_env_step * algo.target_update_interval)))

    def _branch_rollouts(self, real_steps: int) -> None:
        algo = self.model
        # Imagined branches follow the policy being learned: an epsilon-greedy agent acts there with its final
        # exploration rate, not with the high rate its real data collection starts with (DQN's epsilon is 1 at
        # first; random actions in a dream only repeat what the real random actions showed the model).
        exploration_rate = getattr(algo, "exploration_rate", None)
        if exploration_rate is not None:
            algo.exploration_rate = min(exploration_rate, algo.exploration_final_eps)
        try:
            self._imagine_branches(algo, self._branches(real_steps))
        finally:
            if exploration_rate is not None:
                algo.exploration_rate = exploration_rate

    def _branches(self, real_steps: int) -> int:
        """MBPO branches started after a refit ``real_steps`` after the last: ``rollout_batch_size`` per
        ``model_train_freq`` real steps, shared out over the early refits of ``refit_growth``."""
        return max(1, int(round(self.rollout_batch_size * self._period_share(real_steps))))

    def _imagine_branches(self, algo: OffPolicyAlgorithm, n_branches: int) -> None:
        data = self.real.transitions()
        starts = data.obs[self._rng.integers(len(data.obs), size=n_branches)]
        imagination = self._imagination(data.obs)
        obs = torch.as_tensor(starts, device=self.dynamics.device)  # (B, obs_dim)
        alive = torch.ones(len(obs), dtype=torch.bool, device=obs.device)
        lengths = torch.zeros(len(obs), device=obs.device)
        cut = torch.zeros(len(obs), dtype=torch.bool, device=obs.device)
        recent = None  # branches start at real states: nothing accumulated yet
        for _ in range(self.rollout_horizon()):
            obs_np = obs.cpu().numpy().reshape(-1, *algo.observation_space.shape)
            if self._vec_normalize is not None:  # the policy acts on what VecNormalize would show it
                obs_np = self._vec_normalize.normalize_obs(obs_np)
            actions_np, _ = algo.predict(obs_np, deterministic=False)
            actions = torch.as_tensor(actions_np, device=obs.device)
            step = imagination.step(obs, actions.reshape(len(obs), -1), self._torch_generator, recent)
            recent = step.recent
            # A non-finite prediction is a HALT transition in the "terminate" mode; otherwise it is not stored.
            keep = alive & (~step.nonfinite | (self.uncertainty_mode == "terminate"))
            # SB3 stores Box actions scaled to [-1, 1] in replay buffers; Discrete ones as they are.
            buffer_actions = algo.policy.scale_action(actions_np) if self._box_actions else actions_np
            self._imagined.add(
                obs[keep], torch.as_tensor(buffer_actions, device=obs.device)[keep], step.reward[keep],
                step.next_obs[keep], step.terminated[keep],
            )  # fmt: skip
            self.imagined_steps += int(keep.sum())
            lengths += keep.float()
            cut |= alive & step.cut_off
            alive = keep & ~step.terminated & ~step.cut_off
            obs = step.next_obs
            if not alive.any():
                break
        self.logger.record("dyna/imagined_steps", self.imagined_steps)
        self.logger.record("dyna/mean_imagined_rollout_length", float(lengths.mean()))
        self.logger.record("dyna/uncertainty_cutoff_fraction", float(cut.float().mean()))

    # ------------------------------------------------------------------ on-policy: extra updates in the dream
    def _dream_updates(self, real_steps: int) -> None:
        algo: OnPolicyAlgorithm = self.model
        data = self.real.transitions()
        raw_dream = DreamVecEnv(
            n_envs=self.n_dream_envs, start_states=data.obs, max_episode_steps=self._horizon_schedule[3],
            seed=int(self._rng.integers(2**31)), **self._dream_kwargs(),
        )  # fmt: skip
        dream = raw_dream if self._vec_normalize is None else _normalized_view(raw_dream, self._vec_normalize)
        # A dream round is n_dream_envs x at most DREAM_ROUND_STEPS steps: the agent's own n_steps (rl-zoo's Acrobot:
        # 256; SB3's default: 2,048) would make each round 32,768 or 262,144 imagined steps, every 250 real steps.
        steps = min(algo.n_steps, DREAM_ROUND_STEPS)
        dream_buffer = RolloutBuffer(
            steps, algo.observation_space, algo.action_space, device=algo.device, gamma=algo.gamma,
            gae_lambda=algo.gae_lambda, n_envs=self.n_dream_envs,
        )  # fmt: skip
        # collect_rollouts moves these; they belong to the real env and are put back untouched.
        saved = (algo.num_timesteps, algo._last_obs, algo._last_episode_starts, algo.rollout_buffer, algo.env)
        silent = _Silent()
        silent.init_callback(algo)
        try:
            algo.rollout_buffer = dream_buffer
            rounds = self._dream_rounds(real_steps)
            self.logger.record("dyna/dream_rollouts", rounds)
            for _ in range(rounds):
                algo._last_obs = dream.reset()
                algo._last_episode_starts = np.ones(self.n_dream_envs, dtype=bool)
                algo.collect_rollouts(dream, silent, dream_buffer, n_rollout_steps=steps)
                algo.train()
        finally:
            algo.num_timesteps, algo._last_obs, algo._last_episode_starts, algo.rollout_buffer, algo.env = saved
            algo.policy.set_training_mode(False)
        self.imagined_steps += raw_dream.imagined_steps
        self.logger.record("dyna/imagined_steps", self.imagined_steps)
        if raw_dream.episodes:
            self.logger.record("dyna/mean_imagined_rollout_length", raw_dream.episode_steps_total / raw_dream.episodes)
            self.logger.record("dyna/uncertainty_cutoff_fraction", raw_dream.cutoff_episodes / raw_dream.episodes)


_RENAMED = {"model": "dynamics (SB3's model is the agent)", "dream_envs": "n_dream_envs"}


def _refuse_unknown_settings(unknown: dict[str, Any]) -> None:
    """A ``ValueError`` for keywords DynaCallback does not take: the renamed ones get their new name, typos the
    nearest valid ones (a YAML of rl-zoo or of the benchmark names them as a user typed them)."""
    for key in unknown:
        if key in _RENAMED:
            raise ValueError(f"DynaCallback({key}=...) was renamed: use {_RENAMED[key]}")
        takes = [key for key in inspect.signature(DynaCallback.__init__).parameters if key not in ("self", "unknown")]
        near = difflib.get_close_matches(key, takes, n=3)
        hint = f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""
        raise ValueError(f"DynaCallback has no setting {key!r}{hint}; it takes {takes}")


def _normalized_view(dream: DreamVecEnv, normalize: VecNormalize) -> VecNormalize:
    """The dream as the agent sees its real env: observations and rewards scaled by the real VecNormalize's running
    statistics (shared, never updated by imagined data)."""
    view = VecNormalize(dream, training=False, norm_obs=normalize.norm_obs, norm_reward=normalize.norm_reward,
                        clip_obs=normalize.clip_obs, clip_reward=normalize.clip_reward, gamma=normalize.gamma,
                        epsilon=normalize.epsilon, norm_obs_keys=normalize.norm_obs_keys)  # fmt: skip
    view.obs_rms, view.ret_rms = normalize.obs_rms, normalize.ret_rms
    return view


def _is_epsilon_greedy(algo: BaseAlgorithm) -> bool:
    """DQN-like by mechanism: epsilon-greedy exploration and a target network synced by env steps."""
    return all(hasattr(algo, name) for name in ("exploration_rate", "exploration_final_eps", "target_update_interval"))


def _target_networks(algo: BaseAlgorithm) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """The agent's (online, target) network pairs: every module attribute ``X`` with an ``X_target`` beside it."""
    return [(getattr(algo, name), getattr(algo, name + "_target")) for name in target_network_names(algo)]


def _env_id(venv: Any) -> str | None:
    """The registered id of a VecEnv's first env, or None (an env made without ``gym.make``)."""
    spec = venv.get_attr("spec")[0] if venv is not None else None
    return spec.id if spec is not None else None


def _check_horizon(value: int | tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    if is_number(value):
        value = check_int("rollout_horizon", value)
        return (0, 1, value, value)
    if isinstance(value, np.ndarray):
        value = tuple(value.tolist())
    if isinstance(value, (tuple, list)) and len(value) == 4:
        names = ("start_step", "end_step", "min_h", "max_h")
        start, end, low, high = (check_int(f"rollout_horizon's {n}", v, minimum=0) for n, v in zip(names, value))
        value = (start, end, low, high)
        if low < 1 or high < 1 or end < start or low > high:
            raise ValueError(
                f"rollout_horizon schedule (start_step, end_step, min_h, max_h) needs 1 <= min_h <= max_h (MBPO's "
                f"horizon grows from min_h to max_h) and end_step >= start_step, got {value!r}"
            )
        return (start, end, low, high)
    raise ValueError(f"rollout_horizon must be an int >= 1 or (start_step, end_step, min_h, max_h), got {value!r}")
