"""DreamVecEnv: N imagined envs stepped together, one ensemble forward pass per step, as an SB3 VecEnv."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from dream_envs import EnsembleDynamics, TransitionBuffer
from dream_envs.checks import check_int, seed_int, seeded_generator
from dream_envs.envs.dream_env import start_state_option
from dream_envs.envs.imagination import Imagination
from dream_envs.models.task_functions import TaskFn
from dream_envs.spaces import check_actions, check_observations, check_sb3_action_space

__all__ = ["DreamVecEnv"]


class DreamVecEnv(VecEnv):
    """``n_envs`` imagined episodes over an :class:`~dream_envs.EnsembleDynamics`, as a Stable-Baselines3 ``VecEnv``.

    Every ``step`` is ONE ensemble forward pass for all envs; states stay on the model's device and only the
    arrays SB3 needs cross to numpy. The SB3 contract holds exactly: finished envs reset automatically from real
    start states, ``infos[i]["terminal_observation"]`` holds the last observation, and
    ``infos[i]["TimeLimit.truncated"]`` marks episodes that were truncated (time limit, or the uncertainty cutoff in
    the ``"truncate"`` and ``"penalty"`` modes), so agents bootstrap through them; in the ``"terminate"`` mode the
    cutoff ends an episode as terminated (MOReL's HALT, with the penalty in its reward).
    ``infos[i]["uncertainty_cutoff"]`` tells the cutoff apart. Non-finite predictions fire the cutoff and never
    reach the agent. ``last_uncertainty`` holds the latest per-env accumulated disagreement (what the cutoff compares:
    the disagreement summed over the episode's last ``model.uncertainty_window`` steps; ``N``, on the model's device);
    ``imagined_steps``, ``episodes``, ``episode_steps_total`` and ``cutoff_episodes`` are running totals for
    loggers.

    :param model: a fitted ensemble
    :param n_envs: number of imagined envs ``N``
    :param env_id: the real env's id (for ``"known"`` reward/termination functions); default: the model's
    :param start_states: real observations to start episodes from, or a :class:`~dream_envs.TransitionBuffer`;
        default: the model's stored start states
    :param reward_fn: ``None`` (learned), an env id, ``"known"``, ``"module:function"``, or a callable
        ``(obs, action, next_obs) -> N``
    :param termination_fn: like ``reward_fn``
    :param uncertainty_threshold: ``None`` (no cutoff), ``"auto"`` or a number >= 0, as in
        :class:`~dream_envs.DreamEnv`
    :param uncertainty_mode: ``"truncate"``, ``"terminate"`` or ``"penalty"``: what the cutoff does, as in
        :class:`~dream_envs.DreamEnv`
    :param uncertainty_penalty: ``"auto"`` or a number >= 0 in reward units, as in :class:`~dream_envs.DreamEnv`
    :param gamma: the agent's discount, which ``"terminate"``'s ``"auto"`` penalty assumes
    :param propagation: ``"ts1"`` (a random elite per env and step) or ``"mean"`` (elite mean)
    :param deterministic: use predicted means instead of sampling the Gaussian heads
    :param max_episode_steps: time limit per imagined episode (``None``: episodes end only by termination or
        cutoff)
    :param seed: seeds start-state draws and model sampling (``seed()`` re-seeds at the next ``reset()``)

    Example::

        import gymnasium as gym
        import dream_envs
        from stable_baselines3 import PPO
        from sb3_plugins import DreamVecEnv

        model = gym.make("Dream-CartPole-v0").unwrapped.model
        venv = DreamVecEnv(model, n_envs=8, uncertainty_threshold="auto", max_episode_steps=500, seed=0)
        agent = PPO("MlpPolicy", venv, n_steps=32, seed=0).learn(512)
        print(venv.imagined_steps)  # 512
    """

    spec = None  # what get_attr('spec') gives for each env: they were not made by gym.make

    def __init__(
        self,
        model: EnsembleDynamics,
        n_envs: int = 16,
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
        max_episode_steps: int | None = None,
        seed: int | None = None,
    ):
        check_int("n_envs", n_envs)
        if max_episode_steps is not None:
            max_episode_steps = check_int("max_episode_steps", max_episode_steps)
        if isinstance(model, EnsembleDynamics):
            check_sb3_action_space(model.action_space, "DreamVecEnv")
        self.imagination = Imagination(
            model, env_id=env_id, start_states=start_states, reward_fn=reward_fn, termination_fn=termination_fn,
            uncertainty_threshold=uncertainty_threshold, uncertainty_mode=uncertainty_mode,
            uncertainty_penalty=uncertainty_penalty, gamma=gamma, propagation=propagation, deterministic=deterministic,
        )  # fmt: skip
        self.model = model
        self.render_mode = None
        self.max_episode_steps = max_episode_steps
        self.uncertainty_threshold = self.imagination.uncertainty_threshold
        self.uncertainty_mode = self.imagination.uncertainty_mode
        super().__init__(int(n_envs), model.observation_space, model.action_space)
        device = model.device
        self._generator = seeded_generator(seed, device)
        self._state = torch.zeros((self.num_envs, model.obs_dim), device=device)  # (N, obs_dim)
        self._episode_steps = torch.zeros(self.num_envs, dtype=torch.long, device=device)  # (N,)
        self._recent = self.imagination.no_history(self.num_envs)  # (N, window) each episode's last disagreements
        self._actions: torch.Tensor | None = None
        self._obs_shape = (self.num_envs, *model.observation_space.shape)
        self._obs_dtype = model.observation_space.dtype
        # Running totals for loggers (e.g. DynaCallback): imagined steps, finished episodes, their lengths, cutoffs.
        self.imagined_steps = 0
        self.episodes = 0
        self.episode_steps_total = 0
        self.cutoff_episodes = 0
        self.last_uncertainty = torch.zeros(self.num_envs, device=device)

    # ------------------------------------------------------------------ core
    def _draw_starts(self, n: int) -> torch.Tensor:
        starts = self.imagination.start_states
        return starts[torch.randint(len(starts), (n,), device=starts.device, generator=self._generator)]

    def _to_numpy_obs(self, state: torch.Tensor) -> np.ndarray:
        return state.cpu().numpy().reshape(self._obs_shape).astype(self._obs_dtype, copy=False)

    def reset(self) -> VecEnvObs:
        """Every env starts at a random real start state, or at the one ``set_options({"start_state": obs})`` gave
        it (SB3's per-env reset options, as :class:`~dream_envs.DreamEnv` takes them; other keys are refused)."""
        chosen = {
            i: start
            for i, options in enumerate(self._options)
            if (start := start_state_option(self.observation_space, options, "DreamVecEnv")) is not None
        }
        if self._seeds[0] is not None:
            self._generator.manual_seed(int(self._seeds[0]))
        self._reset_seeds()
        self._reset_options()
        self._state = self._draw_starts(self.num_envs)
        for i, start in chosen.items():
            self._state[i] = torch.as_tensor(start, dtype=self._state.dtype).reshape(-1).to(self._state.device)
        self._episode_steps.zero_()
        self._recent.zero_()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._to_numpy_obs(self._state)

    def reset_from(self, obs: np.ndarray | torch.Tensor) -> VecEnvObs:
        """Reset every env to the given real observations (``N x *obs_shape``), e.g. to branch from real states."""
        state = torch.as_tensor(check_observations(self.observation_space, obs, "reset_from's obs"))
        if len(state) != self.num_envs:
            raise ValueError(f"reset_from needs {self.num_envs} observations (one per env), got {len(state)}")
        state = state.to(self.model.device, torch.float32)
        self._state = state.clone()
        self._episode_steps.zero_()
        self._recent.zero_()
        return self._to_numpy_obs(self._state)

    def step_async(self, actions: np.ndarray) -> None:
        checked = check_actions(self.action_space, actions, self.num_envs, "actions")
        self._actions = torch.as_tensor(checked, device=self.model.device).reshape(self.num_envs, -1)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("DreamVecEnv.step_wait() called without step_async()")
        imagined = self.imagination.step(self._state, self._actions, self._generator, self._recent)
        self._actions = None
        self._episode_steps += 1
        truncated = imagined.truncated
        if self.max_episode_steps is not None:
            truncated = truncated | (self._episode_steps >= self.max_episode_steps)
        dones = imagined.terminated | truncated  # (N,)
        # Auto-reset without data-dependent shapes: draw a start for every env, keep it where the env is done.
        self._state = torch.where(dones[:, None], self._draw_starts(self.num_envs), imagined.next_obs)
        lengths = self._episode_steps.clone()
        self._episode_steps = torch.where(dones, torch.zeros_like(self._episode_steps), self._episode_steps)
        self._recent = torch.where(dones[:, None], torch.zeros_like(imagined.recent), imagined.recent)
        self.last_uncertainty = imagined.uncertainty

        # One transfer to the host for everything the SB3 side reads: (N, 2 * obs_dim + 6).
        per_env = torch.stack(
            [imagined.reward, dones, imagined.terminated, imagined.cut_off, lengths, imagined.nonfinite], dim=1
        )
        host = torch.cat([self._state, imagined.next_obs, per_env.float()], dim=1).cpu().numpy()
        obs_dim = self.model.obs_dim
        obs = host[:, :obs_dim].reshape(self._obs_shape).astype(self._obs_dtype)
        terminal_obs = host[:, obs_dim : 2 * obs_dim]
        rewards = np.ascontiguousarray(host[:, 2 * obs_dim])
        dones_np, terminated_np, cut_off_np, nonfinite_np = (host[:, 2 * obs_dim + k] > 0.5 for k in (1, 2, 3, 5))
        lengths_np = host[:, 2 * obs_dim + 4].astype(np.int64)

        self.imagined_steps += self.num_envs
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        done_idx = np.flatnonzero(dones_np)
        for i in done_idx:  # only the envs that finished: their episode ends need per-env records
            infos[i]["terminal_observation"] = terminal_obs[i].reshape(self.observation_space.shape)
            infos[i]["TimeLimit.truncated"] = not terminated_np[i]
            infos[i]["uncertainty_cutoff"] = bool(cut_off_np[i])
            if nonfinite_np[i]:  # as DreamEnv says it: the model's prediction was NaN/inf, and never reached the agent
                infos[i]["model_nonfinite"] = True
        self.episodes += len(done_idx)
        self.episode_steps_total += int(lengths_np[done_idx].sum())
        self.cutoff_episodes += int(cut_off_np[done_idx].sum())
        return obs, rewards, dones_np, infos

    # ------------------------------------------------------------------ VecEnv plumbing
    def close(self) -> None:
        return None

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        """Seed the next ``reset()`` (SB3 semantics: env ``i`` gets ``seed + i``)."""
        seed = seed_int() if seed is None else check_int("seed", seed, minimum=0)
        self._seeds = [seed + i for i in range(self.num_envs)]
        return self._seeds

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        chosen = [indices] if isinstance(indices, (int, np.integer)) else list(indices)
        for index in chosen:
            whole = isinstance(index, (int, np.integer)) and not isinstance(index, bool)
            if not whole or not -self.num_envs <= index < self.num_envs:
                raise IndexError(f"env index {index!r} is out of range for a DreamVecEnv of {self.num_envs} envs")
        return [int(index) % self.num_envs for index in chosen]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """All imagined envs share this object's attributes; the value is repeated per index."""
        chosen = self._indices(indices)
        value = getattr(self, attr_name)
        return [value for _ in chosen]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set a shared attribute; the envs have no per-env attributes, so a strict subset of indices is refused."""
        if sorted(self._indices(indices)) != list(range(self.num_envs)):
            raise ValueError(
                f"DreamVecEnv envs share their attributes; set_attr({attr_name!r}) applies to all {self.num_envs} "
                f"envs, not to indices={indices!r}"
            )
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        """Call a method of this object ONCE (the envs share it: ``reset`` resets them all) and repeat its result per
        env; a strict subset of indices is refused, as in :meth:`set_attr`."""
        if sorted(self._indices(indices)) != list(range(self.num_envs)):
            raise ValueError(
                f"DreamVecEnv envs share their methods; env_method({method_name!r}) applies to all {self.num_envs} "
                f"envs at once, not to indices={indices!r}"
            )
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in range(self.num_envs)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
