"""MuZero (Schrittwieser et al. 2020): plan with MCTS in a learned latent model; learn the model only from what
the planner needs (rewards, values, policies), by unrolling it K steps along real trajectories."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from dream_envs.agents.base import ModelBasedAgent
from dream_envs.agents.muzero.networks import MuZeroNetwork, NetworkSearchModel
from dream_envs.agents.muzero.replay import MuZeroReplay
from dream_envs.agents.muzero.support import from_support, to_support
from dream_envs.checks import check_bool, check_int, check_number, check_probability
from dream_envs.device import resolve_device
from dream_envs.io import ModelFileError
from dream_envs.planning.mcts import BatchedMCTS

__all__ = ["MuZero"]

DEFAULT_TEMPERATURES = ((0, 1.0), (10_000, 0.5), (15_000, 0.25))
# Self-play envs made from an env id: their searches share each network call (docs/mcts_batching.md).
DEFAULT_SELF_PLAY_ENVS = 8


def visit_temperature(schedule: Sequence[Sequence[float]], step: int) -> float:
    """The temperature of the last ``(from_step, temperature)`` entry whose ``from_step`` is <= ``step``."""
    temperature = float(schedule[0][1])
    for from_step, value in schedule:
        if step >= from_step:
            temperature = float(value)
    return temperature


def _scale_gradient(tensor: torch.Tensor, factor: float) -> torch.Tensor:
    """Same value, gradient multiplied by ``factor`` on the way back."""
    return tensor * factor + tensor.detach() * (1 - factor)


class MuZero(ModelBasedAgent):
    """MuZero for Discrete actions and flat Box observations, with batched self-play.

    Each real step searches every self-play env's state with one :class:`~dream_envs.planning.BatchedMCTS` (all
    trees share each network call), acts by the visit counts (sharpened by a temperature schedule), and stores
    the search's policy and value. Between real steps the network is trained ``train_ratio`` gradient steps per
    real step on prioritised K-step unrolls: categorical reward and value losses on MuZero's squashed scale, a
    policy cross-entropy, each unrolled step's loss scaled by 1/K and the gradient through the dynamics halved.
    Reanalyse (on by default) bootstraps the n-step value targets from a target network's fresh values of the
    stored observations instead of the stale values of old searches.

    The defaults are general; the settings measured on CartPole-v1 (docs/benchmarks.md) are the benchmark's, in
    ``_OWN`` of ``sb3_plugins/benchmark/hyperparams.py``.

    :param env: an env id (``n_envs`` copies are made), a gymnasium Env (one self-play env) or a VecEnv
    :param n_envs: self-play envs when ``env`` is an id (default 8); must match a given VecEnv
    :param num_simulations: MCTS simulations per action
    :param discount: discount of rewards
    :param td_steps: ``n`` of the n-step value targets
    :param unroll_steps: ``K``, steps the model is unrolled in training
    :param batch_size: unrolls per gradient step
    :param learning_rate: Adam's step size
    :param weight_decay: L2 weight decay (MuZero's 1e-4)
    :param latent_size: size of the hidden state
    :param hidden_size: width of the networks' hidden layers
    :param support_size: reward/value bins on each side of zero (values up to ``h^-1(support_size)``)
    :param train_ratio: gradient steps per real step
    :param learning_starts: searched states the replay must hold before the first gradient step: the first
        ``learning_starts`` real steps of a fresh agent; an agent given a replay by :meth:`load_replay_buffer` that
        holds that many trains from its first real step
    :param value_loss_weight: weight of the value loss (MuZero Reanalyse's 0.25)
    :param consistency_loss_weight: weight of EfficientZero's self-supervised consistency loss (each unrolled state
        must predict the representation of the real observation it stands for); 0 turns it off (plain MuZero)
    :param priority_alpha: priority exponent of the replay (0: uniform)
    :param priority_beta: importance-sampling exponent
    :param reanalyse: bootstrap value targets from the target network's values of the stored observations
    :param target_update_interval: gradient steps between copies into the target network
    :param temperature_schedule: ``[(from_real_step, temperature), ...]`` of the visit-count sampling in self-play
    :param dirichlet_alpha: concentration of the root noise
    :param exploration_fraction: weight of the root noise
    :param pb_c_base: pUCT's ``c2``
    :param pb_c_init: pUCT's ``c1``
    :param max_grad_norm: gradient clipping
    :param seed: seeds the networks, the search, the replay sampling and the envs
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param verbose: 1 prints SB3's log table every ``log_interval`` episodes
    :param tensorboard_log: folder for TensorBoard logs, or None

    ``save`` keeps the networks, not the replay (it grows with every real step); :meth:`save_replay_buffer` and
    :meth:`load_replay_buffer` keep it in a file of its own, as SB3's off-policy agents do.

    Example::

        import gymnasium as gym
        from dream_envs.agents import MuZero

        agent = MuZero("CartPole-v1", n_envs=2, num_simulations=4, batch_size=8, learning_starts=16, seed=0)
        agent.learn(32)
        print(agent.predict(gym.make("CartPole-v1").reset(seed=0)[0], deterministic=True))
    """

    _vectorized = True
    # n_envs is not saved: a loaded agent acts in whatever env it is given (one env, to evaluate, say).
    _hyperparams = ("num_simulations", "discount", "td_steps", "unroll_steps", "batch_size", "learning_rate",
                    "weight_decay", "latent_size", "hidden_size", "support_size", "train_ratio", "learning_starts",
                    "value_loss_weight", "consistency_loss_weight", "priority_alpha", "priority_beta", "reanalyse",
                    "target_update_interval", "temperature_schedule", "dirichlet_alpha", "exploration_fraction",
                    "pb_c_base", "pb_c_init", "max_grad_norm", "seed", "device", "verbose",
                    "tensorboard_log")  # fmt: skip

    def __init__(
        self,
        env: gym.Env | VecEnv | str,
        n_envs: int | None = None,
        num_simulations: int = 25,
        discount: float = 0.997,
        td_steps: int = 10,
        unroll_steps: int = 5,
        batch_size: int = 128,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        latent_size: int = 32,
        hidden_size: int = 64,
        support_size: int = 20,
        train_ratio: float = 0.5,
        learning_starts: int = 500,
        value_loss_weight: float = 0.25,
        consistency_loss_weight: float = 2.0,
        priority_alpha: float = 1.0,
        priority_beta: float = 1.0,
        reanalyse: bool = True,
        target_update_interval: int = 100,
        temperature_schedule: Sequence[Sequence[float]] = DEFAULT_TEMPERATURES,
        dirichlet_alpha: float = 0.25,
        exploration_fraction: float = 0.25,
        pb_c_base: float = 19652,
        pb_c_init: float = 1.25,
        max_grad_norm: float = 5.0,
        seed: int | None = None,
        device: str = "auto",
        verbose: int = 0,
        tensorboard_log: str | None = None,
    ):
        for name, value in (("num_simulations", num_simulations), ("td_steps", td_steps),
                            ("unroll_steps", unroll_steps), ("batch_size", batch_size), ("latent_size", latent_size),
                            ("hidden_size", hidden_size), ("support_size", support_size),
                            ("target_update_interval", target_update_interval)):  # fmt: skip
            check_int(name, value)
        check_int("learning_starts", learning_starts, minimum=0)
        check_number("discount", discount, 0.0, 1.0, low_open=True)
        for name, value in (("train_ratio", train_ratio), ("learning_rate", learning_rate),
                            ("max_grad_norm", max_grad_norm), ("dirichlet_alpha", dirichlet_alpha),
                            ("pb_c_base", pb_c_base)):  # fmt: skip
            check_number(name, value, 0.0, math.inf, low_open=True, high_open=True)
        for name, value in (("weight_decay", weight_decay), ("value_loss_weight", value_loss_weight),
                            ("consistency_loss_weight", consistency_loss_weight), ("priority_alpha", priority_alpha),
                            ("pb_c_init", pb_c_init)):  # fmt: skip
            check_number(name, value, 0.0, math.inf, high_open=True)  # 0 turns the term off; NaN/inf break it
        check_probability("priority_beta", priority_beta)
        check_probability("exploration_fraction", exploration_fraction)
        check_bool("reanalyse", reanalyse)
        if seed is not None:
            check_int("seed", seed, minimum=0)
        check_int("verbose", verbose, minimum=0)
        self.temperature_schedule = _check_schedule(temperature_schedule)
        super().__init__(_self_play_env(env, n_envs, seed), seed=seed, verbose=verbose,
                         tensorboard_log=tensorboard_log)  # fmt: skip
        if not isinstance(self.action_space, spaces.Discrete):
            raise ValueError(f"MuZero plans over Discrete actions; the env's action space is {self.action_space}")
        if not isinstance(self.observation_space, spaces.Box):
            raise ValueError(f"MuZero needs a Box observation space (flattened into its network); the env has "
                             f"{self.observation_space}")  # fmt: skip
        self.n_envs = self.env.num_envs
        self.num_simulations, self.discount, self.td_steps = int(num_simulations), float(discount), int(td_steps)
        self.unroll_steps, self.batch_size = int(unroll_steps), int(batch_size)
        self.learning_rate, self.weight_decay = float(learning_rate), float(weight_decay)
        self.latent_size, self.hidden_size, self.support_size = int(latent_size), int(hidden_size), int(support_size)
        self.train_ratio, self.learning_starts = float(train_ratio), int(learning_starts)
        self.value_loss_weight, self.priority_alpha = float(value_loss_weight), float(priority_alpha)
        self.consistency_loss_weight = float(consistency_loss_weight)
        self.priority_beta, self.reanalyse = float(priority_beta), bool(reanalyse)
        self.target_update_interval, self.max_grad_norm = int(target_update_interval), float(max_grad_norm)
        self.dirichlet_alpha, self.exploration_fraction = float(dirichlet_alpha), float(exploration_fraction)
        self.pb_c_base, self.pb_c_init, self.device = float(pb_c_base), float(pb_c_init), device
        self._device = resolve_device(device)
        n_actions = int(self.action_space.n)
        self.search = BatchedMCTS(n_actions, num_simulations, self.discount, self.pb_c_base, self.pb_c_init,
                                  self.dirichlet_alpha, self.exploration_fraction, seed=seed)  # fmt: skip
        obs_dim = int(np.prod(self.observation_space.shape))
        # A seeded agent initialises its networks from ``seed`` on the CPU generator, inside a fork: the user's global
        # random state (CPU and CUDA) is left as it was (torch.manual_seed here reseeded both for good).
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.random.default_generator.manual_seed(seed)
            network = MuZeroNetwork(obs_dim, n_actions, self.latent_size, self.hidden_size, self.support_size)
        self.network = network.to(self._device)
        self.target_network = copy.deepcopy(self.network).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=self.learning_rate,
                                          weight_decay=self.weight_decay)  # fmt: skip
        self.search_model = NetworkSearchModel(self.network, self._device)
        self.replay = MuZeroReplay(self.n_envs, self.observation_space.shape, n_actions, self.priority_alpha)
        self._replay_obs: np.ndarray | None = None  # the observations the replay's open episodes go on from
        self.gradient_steps, self._pending_updates = 0, 0.0

    # ------------------------------------------------------------------ acting
    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:  # fmt: skip
        """Actions for one observation or a batch, each from its own search (SB3's signature).

        :param observation: one observation shaped like the Box space, or a batch with a leading env dimension
        :param state: unused (no recurrent state); returned as None
        :param episode_start: unused (each action is a fresh search)
        :param deterministic: the most visited root action of a search that draws no random number (no root noise,
            pUCT and visit ties broken by the higher prior, then the lower action): the same observation gives the
            same action at every call, alone or in any batch. False samples the visit counts at the temperature of
            the schedule, as self-play does
        :return: ``(actions, None)``; one action for one observation
        :raises ValueError: for an observation of another shape than the space's (or a batch of them), or one
            that is not numeric or holds NaN or +-inf (the network would turn it into a NaN search, hence action 0)
        """
        check_bool("deterministic", deterministic)
        obs = np.asarray(observation)
        if obs.dtype.kind not in "iuf":
            raise ValueError(f"observation must be numbers of the observation space {self.observation_space}, got "
                             f"an array of dtype {obs.dtype}")  # fmt: skip
        if not np.isfinite(obs).all():
            raise ValueError(f"observation holds NaN or +-inf values, which no search can plan from: {obs!r}")
        return super().predict(obs, state, episode_start, deterministic)

    def _predict(self, observations: np.ndarray, deterministic: bool) -> np.ndarray:
        if len(observations) == 0:  # no tree to search (a batch of zero envs)
            return np.zeros(0, np.int64)
        result = self.search.search(self.search_model, observations, add_noise=False, deterministic=deterministic)
        if deterministic:
            return BatchedMCTS.action_from_visits(result.visit_counts, 0.0, self.rng, tie_break=result.root_prior)
        temperature = visit_temperature(self.temperature_schedule, self.num_timesteps)
        return BatchedMCTS.action_from_visits(result.visit_counts, temperature, self.rng)

    def _finite_root_values(self, observations: np.ndarray, root_values: np.ndarray) -> np.ndarray:
        """The search's root values as value targets: where every root action's value was NaN/inf (the search
        learned nothing there, and its root value is NaN), the network's own value of the observation stands in."""
        unknown = ~np.isfinite(root_values)
        if not unknown.any():
            return root_values
        root_values = np.where(unknown, self._values(observations), root_values)
        if not np.isfinite(root_values).all():
            raise FloatingPointError(
                f"MuZero: the search and the value network both gave NaN/inf values for {int(unknown.sum())} of "
                f"{len(root_values)} observations; the network has diverged (lower learning_rate, check rewards)"
            )
        return root_values

    # ------------------------------------------------------------------ learning
    def _train(self, total_timesteps: int, callback: BaseCallback) -> None:
        if self._last_obs is not self._replay_obs:  # the envs were reset under the replay (a new learn, a loaded one)
            self.replay.truncate_open_episodes()
        while self.num_timesteps < total_timesteps:
            obs = self._last_obs
            result = self.search.search(self.search_model, obs, add_noise=True)
            temperature = visit_temperature(self.temperature_schedule, self.num_timesteps)
            actions = BatchedMCTS.action_from_visits(result.visit_counts, temperature, self.rng)
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += self.n_envs
            root_values = self._finite_root_values(obs, result.root_values)
            self.replay.add_step(obs, actions, rewards, root_values, result.policy)
            for i in np.flatnonzero(dones):
                truncated = bool(infos[i].get("TimeLimit.truncated", False))
                final = np.asarray(infos[i]["terminal_observation"], np.float32)
                final_value = self._values(final[None])[0] if truncated else 0.0
                self.replay.end_episode(int(i), final, terminated=not truncated, final_value=final_value)
            self._last_obs = self._replay_obs = new_obs
            self.logger.record_mean("muzero/root_value", float(root_values.mean()))
            callback.update_locals(locals())
            if not callback.on_step():
                return
            for i in np.flatnonzero(dones):
                self._episode_done(infos[i])
            # What the replay holds, not this call's step count: a loaded replay, or an earlier learn's, counts.
            if len(self.replay) >= self.learning_starts:
                self._pending_updates += self.n_envs * self.train_ratio
                while self._pending_updates >= 1:
                    self._pending_updates -= 1
                    self._gradient_step()

    @torch.no_grad()
    def _values(self, observations: np.ndarray, network: MuZeroNetwork | None = None) -> np.ndarray:
        network = network or self.network
        obs = torch.as_tensor(np.ascontiguousarray(observations, np.float32), device=self._device)
        _, value, _ = network.initial_inference(obs)
        return value.cpu().numpy()

    def _gradient_step(self) -> None:
        envs, positions, weights = self.replay.sample(self.batch_size, self.rng, self.priority_beta)
        bootstrap = (lambda obs: self._values(obs, self.target_network)) if self.reanalyse else None
        batch = self.replay.targets(envs, positions, self.unroll_steps, self.td_steps, self.discount, bootstrap,
                                    self.rng)  # fmt: skip
        device, support = self._device, self.support_size
        tensors = {name: torch.as_tensor(getattr(batch, name), device=device) for name in
                   ("observations", "actions", "rewards", "reward_mask", "values", "value_mask", "policies",
                    "policy_mask", "next_observations", "observation_mask")}  # fmt: skip
        value_targets = to_support(tensors["values"], support)
        reward_targets = to_support(tensors["rewards"], support)

        hidden = self.network.represent(tensors["observations"])
        policy_logits, value_logits = self.network.predict(hidden)
        value_loss = _cross_entropy(value_logits, value_targets[:, 0]) * tensors["value_mask"][:, 0]
        policy_loss = _cross_entropy(policy_logits, tensors["policies"][:, 0]) * tensors["policy_mask"][:, 0]
        reward_loss = torch.zeros_like(value_loss)
        consistency_loss = torch.zeros_like(value_loss)
        if self.consistency_loss_weight > 0:
            with torch.no_grad():
                next_obs = tensors["next_observations"]
                real = self.network.represent(next_obs.flatten(0, 1)).view(len(next_obs), self.unroll_steps, -1)
                real_projection = self.network.project(real, predictor=False)
        first_values = from_support(value_logits.detach(), support)
        for k in range(self.unroll_steps):
            hidden, reward_logits = self.network.dynamics(hidden, tensors["actions"][:, k])
            hidden = _scale_gradient(hidden, 0.5)  # MuZero: halve the gradient flowing back through time
            policy_logits, value_logits = self.network.predict(hidden)
            step = 1.0 / self.unroll_steps  # each unrolled step's loss scaled by 1/K
            reward_loss = reward_loss + step * _cross_entropy(reward_logits, reward_targets[:, k]) * \
                tensors["reward_mask"][:, k]  # fmt: skip
            value_loss = value_loss + step * _cross_entropy(value_logits, value_targets[:, k + 1]) * \
                tensors["value_mask"][:, k + 1]  # fmt: skip
            policy_loss = policy_loss + step * _cross_entropy(policy_logits, tensors["policies"][:, k + 1]) * \
                tensors["policy_mask"][:, k + 1]  # fmt: skip
            if self.consistency_loss_weight > 0:
                predicted = self.network.project(hidden, predictor=True)
                similarity = F.cosine_similarity(predicted, real_projection[:, k], -1)
                consistency_loss = consistency_loss - step * similarity * tensors["observation_mask"][:, k]
        per_sample = reward_loss + self.value_loss_weight * value_loss + policy_loss + \
            self.consistency_loss_weight * consistency_loss  # fmt: skip
        loss = (per_sample * torch.as_tensor(weights, dtype=per_sample.dtype, device=device)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.gradient_steps += 1
        if self.gradient_steps % self.target_update_interval == 0:
            self.target_network.load_state_dict(self.network.state_dict())

        errors = (first_values - tensors["values"][:, 0]).abs().cpu().numpy() + 1e-6
        self.replay.update_priorities(envs, positions, errors)
        self.logger.record_mean("train/loss", loss.item())
        self.logger.record_mean("train/value_loss", value_loss.mean().item())
        self.logger.record_mean("train/reward_loss", reward_loss.mean().item())
        self.logger.record_mean("train/policy_loss", policy_loss.mean().item())
        self.logger.record_mean("train/consistency_loss", consistency_loss.mean().item())
        self.logger.record("train/n_updates", self.gradient_steps)

    # ------------------------------------------------------------------ persistence
    def save_replay_buffer(self, path: str | os.PathLike) -> Path:
        """Save the replay (every searched state, its targets' ingredients and priorities) atomically.

        :param path: the file (a failed write keeps the old one)
        """
        return self.replay.save(path)

    def load_replay_buffer(self, path: str | os.PathLike) -> None:
        """Replace the replay by one saved with :meth:`save_replay_buffer` (loaded safely: no code runs). Its
        episodes that were still being played end at their newest state when learning goes on (the envs start
        new ones), and an agent whose loaded replay holds ``learning_starts`` states trains from its first step.

        :param path: the file
        :raises FileNotFoundError: no file at ``path``
        :raises ModelFileError: truncated, corrupted or foreign file, or a replay of other spaces
        :raises ValueError: a replay of another number of self-play envs than this agent's
        """
        replay = MuZeroReplay.load(path, self.priority_alpha)
        source = repr(str(path))
        if replay.obs_shape != self.observation_space.shape or replay.n_actions != self.action_space.n:
            raise ModelFileError(f"{source} holds a replay of observations {replay.obs_shape} and "
                                 f"{replay.n_actions} actions; this agent has {self.observation_space.shape} and "
                                 f"{self.action_space.n}")  # fmt: skip
        if replay.n_envs != self.n_envs:
            raise ValueError(f"{source} holds the streams of {replay.n_envs} self-play envs; this agent plays "
                             f"{self.n_envs}: make it with n_envs={replay.n_envs} (MuZero.load(path, env_id, "
                             f"n_envs={replay.n_envs}))")  # fmt: skip
        self.replay, self._replay_obs = replay, None

    def _get_state(self) -> dict[str, Any]:
        return {"network": {k: v.cpu() for k, v in self.network.state_dict().items()},
                "target_network": {k: v.cpu() for k, v in self.target_network.state_dict().items()},
                "gradient_steps": self.gradient_steps}  # fmt: skip

    def _set_state(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.target_network.load_state_dict(state["target_network"])
        self.gradient_steps = int(state["gradient_steps"])


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, -1)).sum(-1)


def _self_play_env(env: gym.Env | VecEnv | str, n_envs: int | None, seed: int | None) -> gym.Env | VecEnv:
    if n_envs is not None:
        check_int("n_envs", n_envs)
    if isinstance(env, str):
        return make_vec_env(env, n_envs=DEFAULT_SELF_PLAY_ENVS if n_envs is None else int(n_envs), seed=seed)
    count = env.num_envs if isinstance(env, VecEnv) else 1
    if n_envs is not None and n_envs != count:
        raise ValueError(f"n_envs={n_envs} but the given env runs {count} env(s); pass an env id to have "
                         f"{n_envs} copies made, or a VecEnv of {n_envs}")  # fmt: skip
    return env


def _check_schedule(schedule: Any) -> tuple[tuple[int, float], ...]:
    """``temperature_schedule`` as ``((from_real_step, temperature), ...)``, or a ``ValueError`` naming the entry at
    fault: a non-empty list of pairs whose steps are integers starting at 0 and strictly increasing (the
    temperature of a step is that of the last entry at or before it, :func:`visit_temperature`), and whose
    temperatures are finite numbers >= 0 (0 takes the most visited action, :meth:`BatchedMCTS.action_from_visits`)."""
    expected = "a non-empty list of (from_real_step, temperature) pairs, e.g. [(0, 1.0), (10000, 0.5)]"
    if isinstance(schedule, (str, bytes, Mapping)) or not isinstance(schedule, (Sequence, np.ndarray)):
        raise ValueError(f"temperature_schedule must be {expected}, got {schedule!r}")
    pairs = []
    for index, entry in enumerate(schedule):
        if isinstance(entry, (str, bytes)) or not isinstance(entry, (Sequence, np.ndarray)) or len(entry) != 2:
            raise ValueError(f"temperature_schedule must be {expected}; entry {index} is {entry!r}")
        step = check_int(f"temperature_schedule[{index}]'s step (real steps)", entry[0], minimum=0)
        temperature = check_number(f"temperature_schedule[{index}]'s temperature (0: the most visited action)",
                                   entry[1], 0.0, math.inf, high_open=True)  # fmt: skip
        pairs.append((step, temperature))
    if not pairs:
        raise ValueError(f"temperature_schedule must be {expected}, got {schedule!r}")
    if pairs[0][0] != 0:
        raise ValueError(f"temperature_schedule must start at step 0 (the first self-play step needs a temperature), "
                         f"got {schedule!r}")  # fmt: skip
    for index, (before, after) in enumerate(zip(pairs, pairs[1:]), start=1):
        if after[0] <= before[0]:
            raise ValueError(f"temperature_schedule's steps must increase strictly; entry {index} at step {after[0]} "
                             f"follows step {before[0]}: got {schedule!r}")  # fmt: skip
    return tuple(pairs)
