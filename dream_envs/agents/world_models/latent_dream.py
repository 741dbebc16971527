"""The dream: M run on its own samples from real starting latents. A batched torch API (many dream episodes in
one forward pass per step, what CMA-ES uses) and the same dream as a gymnasium ``Env`` for any agent."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from dream_envs.agents.world_models.mdn_rnn import MDNRNN
from dream_envs.checks import check_int
from dream_envs.device import generator_device
from dream_envs.spaces import check_action_space, encode_action

__all__ = ["DreamState", "LatentDream", "LatentDreamEnv", "check_tau"]


def check_tau(tau: Any) -> float:
    """``tau`` as a float, or a ``ValueError`` naming it: the sampling temperature must be finite and >= 0."""
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.integer, np.floating)) or not math.isfinite(tau):
        raise ValueError(f"tau must be a finite number >= 0 (the sampling temperature), got {tau!r}")
    if tau < 0:
        raise ValueError(f"tau must be >= 0 (0: the most likely next latent; the paper uses 1.0-1.3), got {tau!r}")
    return float(tau)


class DreamState(NamedTuple):
    """A batch of dream states: the current latent and M's memory (each row one dream episode).

    Example::

        import torch
        from dream_envs.agents.world_models import DreamState

        state = DreamState(z=torch.zeros(3, 4), h=torch.zeros(3, 8), c=torch.zeros(3, 8))
        print(state.features().shape)  # (3, 12)
    """

    z: torch.Tensor  # (B, Z)
    h: torch.Tensor  # (B, H)
    c: torch.Tensor  # (B, H)

    def features(self) -> torch.Tensor:
        """What the controller sees: ``[z, h]``, ``B x (Z + H)``."""
        return torch.cat([self.z, self.h], dim=-1)


class LatentDream:
    """Batched dream stepping in torch: ``reset`` draws starting latents from real encoded first frames,
    ``step`` feeds ``(z, a)`` to M, samples the next latent at temperature ``tau`` and thresholds the termination
    probability given the sampled latent at 0.5 (the termination head is trained with ``pos_weight`` so that 0.5
    balances missed and false terminations).

    :param model: the trained MDN-RNN
    :param start_latents: ``N x Z`` latents of real first frames (dream episodes start there, with zero memory)
    :param action_space: the real env's action space (Discrete or Box)
    :param tau: sampling temperature (0: deterministic dream)
    :param start_memory: ``(h, c)``, each ``N x H``: M's memory at each start (None: zeros, as at a first frame);
        with it, dream episodes can also start at real mid-episode states, M's memory being that of the real
        frames before
    :param start_weights: ``N`` non-negative weights of the starts (None: uniform)

    Example::

        import torch
        from gymnasium import spaces
        from dream_envs.agents.world_models import MDNRNN, LatentDream

        dream = LatentDream(MDNRNN(4, 2, hidden_size=8, seed=0), torch.zeros(3, 4), spaces.Discrete(2), tau=1.0)
        generator = torch.Generator().manual_seed(0)
        state = dream.reset(6, generator)  # 6 dream episodes at once
        state, reward, terminated = dream.step(state, torch.ones(6, dtype=torch.long), generator=generator)
        print(state.features().shape, reward.shape, terminated.dtype)  # (6, 12), (6,), torch.bool
    """

    def __init__(self, model: MDNRNN, start_latents: torch.Tensor | np.ndarray, action_space: spaces.Space,
                 tau: float = 1.0, start_memory: tuple[torch.Tensor, torch.Tensor] | None = None,
                 start_weights: torch.Tensor | None = None):  # fmt: skip
        self.model = model
        self.action_space = check_action_space(action_space)
        self.start_latents = torch.as_tensor(np.asarray(start_latents, np.float32), device=model.device)
        if (
            self.start_latents.ndim != 2
            or self.start_latents.shape[1] != model.latent_size
            or not len(self.start_latents)
        ):
            raise ValueError(f"start_latents must be N x {model.latent_size} with N >= 1, got shape "
                             f"{tuple(self.start_latents.shape)}")  # fmt: skip
        self.tau = check_tau(tau)
        n_starts = len(self.start_latents)
        if start_memory is not None:
            start_memory = tuple(torch.as_tensor(m, dtype=torch.float32, device=model.device) for m in start_memory)
            if any(m.shape != (n_starts, model.hidden_size) for m in start_memory):
                raise ValueError(f"start_memory must be (h, c), each {n_starts} x {model.hidden_size}, got "
                                 f"{[tuple(m.shape) for m in start_memory]}")  # fmt: skip
        if start_weights is not None:
            start_weights = torch.as_tensor(start_weights, dtype=torch.float32, device=model.device)
            if start_weights.shape != (n_starts,) or bool((start_weights < 0).any()) or not start_weights.sum() > 0:
                raise ValueError(f"start_weights must be {n_starts} non-negative weights, not all zero")
        self.start_memory, self.start_weights = start_memory, start_weights

    @property
    def feature_size(self) -> int:
        """``Z + H``."""
        return self.model.latent_size + self.model.hidden_size

    @torch.no_grad()
    def reset(self, batch: int, generator: torch.Generator | None = None,
              start_index: torch.Tensor | None = None) -> DreamState:  # fmt: skip
        """``batch`` dream episodes from random real starting latents (or the rows ``start_index``)."""
        if start_index is None:
            start_index = self.sample_starts(batch, generator)
        start_index = start_index.to(self.start_latents.device)
        if self.start_memory is None:
            h, c = self.model.initial_state(batch)
        else:
            h, c = (m[start_index] for m in self.start_memory)
        return DreamState(self.start_latents[start_index], h, c)

    def sample_starts(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``batch`` start indices, uniform or by ``start_weights``, on ``generator``'s device (the model's when
        None)."""
        device = generator_device(generator, self.start_latents.device)
        if self.start_weights is None:
            return torch.randint(len(self.start_latents), (batch,), generator=generator, device=device)
        return torch.multinomial(self.start_weights.to(device), batch, replacement=True, generator=generator)

    @torch.no_grad()
    def step(self, state: DreamState, actions: torch.Tensor, uniform: torch.Tensor | None = None,
             normal: torch.Tensor | None = None, generator: torch.Generator | None = None,
             ) -> tuple[DreamState, torch.Tensor, torch.Tensor]:  # fmt: skip
        """One dream step for every row: env actions (``B`` indices or ``B x *shape`` floats) -> the next state,
        rewards ``B`` and terminations ``B`` (bool). ``uniform``/``normal`` (``B x Z``) fix the sampling noise, so
        callers can share it between rows (common random numbers)."""
        encoded = encode_action(self.action_space, actions.to(self.model.device))  # (B, A)
        out, (h, c) = self.model.step(state.z, encoded, (state.h, state.c))
        z = MDNRNN.sample_latent(out, self.tau, uniform, normal, generator)
        return DreamState(z, h, c), out.reward, self.model.done_logit(out.hidden, z) > 0


class LatentDreamEnv(gym.Env):
    """The dream as a gymnasium ``Env``: observations ``[z, h]`` (``Z + H`` floats), the real env's action space,
    the learned reward, terminations from M's termination head, truncation after ``max_episode_steps``.

    Any agent (SB3's PPO, say) can train in it; :class:`~dream_envs.agents.WorldModels` builds one with
    ``make_dream_env()``.

    :param model: the trained MDN-RNN
    :param start_latents: ``N x Z`` latents of real first frames (each episode starts at one, drawn at random)
    :param action_space: the real env's action space
    :param tau: sampling temperature of the next latent (0: deterministic)
    :param max_episode_steps: truncation length of a dream episode

    Example::

        import torch
        from gymnasium import spaces
        from gymnasium.utils.env_checker import check_env
        from dream_envs.agents.world_models import MDNRNN, LatentDreamEnv

        env = LatentDreamEnv(MDNRNN(4, 2, hidden_size=8, seed=0), torch.zeros(3, 4), spaces.Discrete(2))
        check_env(env)
        obs, info = env.reset(seed=0)
        print(obs.shape, env.step(0)[1:4])  # (12,) and (reward, terminated, truncated)
    """

    metadata = {"render_modes": []}

    def __init__(self, model: MDNRNN, start_latents: torch.Tensor | np.ndarray, action_space: spaces.Space,
                 tau: float = 1.0, max_episode_steps: int = 1000):  # fmt: skip
        check_int("max_episode_steps", max_episode_steps)
        self.dream = LatentDream(model, start_latents, action_space, tau)
        self.action_space = self.dream.action_space
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.dream.feature_size,), np.float32)
        self.max_episode_steps = int(max_episode_steps)
        self._generator = torch.Generator(device=model.device)  # draws where the dream steps
        self._state: DreamState | None = None
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        # The torch generator follows np_random, so a seeded reset fixes the whole episode.
        self._generator.manual_seed(int(self.np_random.integers(2**62)))
        start = torch.as_tensor([int(self.np_random.integers(len(self.dream.start_latents)))])
        self._state, self._steps = self.dream.reset(1, start_index=start), 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in the action space {self.action_space}")
        actions = torch.as_tensor(np.asarray(action)[None])  # (1,) or (1, *shape)
        self._state, reward, terminated = self.dream.step(self._state, actions, generator=self._generator)
        self._steps += 1
        truncated = self._steps >= self.max_episode_steps and not bool(terminated[0])
        return self._obs(), float(reward[0]), bool(terminated[0]), truncated, {}

    def _obs(self) -> np.ndarray:
        return self._state.features()[0].cpu().numpy().astype(np.float32)
