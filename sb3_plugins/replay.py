"""Imagined transitions for off-policy agents, and the real/imagined mix that SB3's ``train()`` samples from."""

from __future__ import annotations

import copy
import numbers
from typing import Any

import torch
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from dream_envs.checks import seeded_generator

__all__ = ["ImaginedReplay", "MixedReplayBuffer"]


class ImaginedReplay:
    """A ring buffer of imagined transitions kept as torch tensors on the agent's device (no numpy round trip).

    :param capacity: rows kept; the oldest are overwritten (MBPO keeps only recent model rollouts)
    :param obs_shape: per-row observation shape as SB3's replay buffer stores it (``observation_space.shape``;
        an int for a flat one): sampled imagined rows are joined to real rows of that shape
    :param action_shape: per-row action shape as SB3's replay buffer stores it
    :param action_dtype: dtype of stored actions (SB3 keeps Discrete actions as integers)
    :param device: the agent's device
    :param seed: seeds the sampling generator

    Example::

        import torch
        from sb3_plugins.replay import ImaginedReplay

        replay = ImaginedReplay(100, obs_shape=3, action_shape=(1,), action_dtype=torch.float32, device="cpu", seed=0)
        replay.add(torch.zeros(5, 3), torch.zeros(5, 1), torch.ones(5), torch.zeros(5, 3), torch.zeros(5))
        print(len(replay), replay.sample(2).rewards.shape)  # 5 torch.Size([2, 1])
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: int | tuple[int, ...],
        action_shape: tuple[int, ...],
        action_dtype: torch.dtype,
        device: torch.device | str,
        seed: int | None = None,
    ):
        self.capacity = int(capacity)
        self.device = torch.device(device)
        flat = isinstance(obs_shape, numbers.Integral)  # numpy's integers too
        self.obs_shape = (int(obs_shape),) if flat else tuple(int(n) for n in obs_shape)
        self.obs = torch.zeros((self.capacity, *self.obs_shape), device=self.device)
        self.actions = torch.zeros((self.capacity, *action_shape), dtype=action_dtype, device=self.device)
        self.rewards = torch.zeros((self.capacity, 1), device=self.device)
        self.next_obs = torch.zeros((self.capacity, *self.obs_shape), device=self.device)
        self.dones = torch.zeros((self.capacity, 1), device=self.device)
        self.pos, self.size = 0, 0
        self._generator = seeded_generator(seed, self.device)

    def __len__(self) -> int:
        return self.size

    _TENSORS = ("obs", "actions", "rewards", "next_obs", "dones")

    def to(self, device: torch.device | str) -> ImaginedReplay:
        """Move the stored rows (and the sampling generator's state) to ``device``; returns ``self``."""
        device = torch.device(device)
        if device != self.device:
            for name in self._TENSORS:
                setattr(self, name, getattr(self, name).to(device))
            state = self._generator.get_state()
            self._generator = torch.Generator(device=device)
            self._generator.set_state(state)
            self.device = device
        return self

    def state_dict(self) -> dict[str, Any]:
        """The stored rows (CPU tensors), the write position and the sampling generator's state."""
        rows = {name: getattr(self, name)[: self.size].detach().cpu() for name in self._TENSORS}
        return {**rows, "capacity": self.capacity, "pos": self.pos, "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s rows into this buffer, which must have the same capacity and row shapes.

        :raises ValueError: naming the first entry that does not fit
        """
        size = len(state["obs"])
        if state["capacity"] != self.capacity or not 0 <= state["pos"] < max(self.capacity, 1) or size > self.capacity:
            raise ValueError(f"imagined replay of capacity {state['capacity']} with {size} rows at position "
                             f"{state['pos']} does not fit a buffer of capacity {self.capacity}")  # fmt: skip
        for name in self._TENSORS:
            rows, mine = state[name], getattr(self, name)
            if rows.shape[1:] != mine.shape[1:] or len(rows) != size or rows.dtype != mine.dtype:
                raise ValueError(f"imagined {name} of shape {tuple(rows.shape)} ({rows.dtype}) does not fit rows of "
                                 f"shape {tuple(mine.shape[1:])} ({mine.dtype})")  # fmt: skip
            mine[:size] = rows.to(self.device)
        self.pos, self.size = int(state["pos"]), size
        self._generator.set_state(state["generator"])

    def add(self, obs, actions, rewards, next_obs, dones) -> None:
        """Append ``B`` rows (tensors with a leading ``B``; observations flat or of :attr:`obs_shape`), overwriting
        the oldest when full; ``B`` may be 0."""
        n = len(obs)
        if n == 0:  # every branch cut at its first step
            return
        index = (self.pos + torch.arange(n, device=self.device)) % self.capacity
        self.obs[index] = obs.to(self.device).reshape(n, *self.obs_shape).float()
        self.actions[index] = actions.to(self.device, self.actions.dtype).reshape(n, *self.actions.shape[1:])
        self.rewards[index] = rewards.to(self.device).reshape(n, 1).float()
        self.next_obs[index] = next_obs.to(self.device).reshape(n, *self.obs_shape).float()
        self.dones[index] = dones.to(self.device).reshape(n, 1).float()
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> ReplayBufferSamples:
        index = torch.randint(self.size, (batch_size,), device=self.device, generator=self._generator)
        return ReplayBufferSamples(
            self.obs[index], self.actions[index], self.next_obs[index], self.dones[index], self.rewards[index], None
        )


class MixedReplayBuffer:
    """Stands in for an off-policy agent's ``replay_buffer``: stores real transitions as before, and samples
    batches that are ``real_ratio`` real and the rest imagined (all real while nothing is imagined yet).

    Every attribute and method other than ``sample`` is the real buffer's, so SB3's collection keeps working on real
    data. ``save_replay_buffer`` (and ``CheckpointCallback(save_replay_buffer=True)``) writes the real buffer itself,
    so ``load_replay_buffer`` gives the agent the stock ``ReplayBuffer`` it expects; a :class:`DynaCallback` wraps it
    again at the next ``learn()``, and its own state file keeps the imagined rows.

    :param real: the agent's own replay buffer
    :param imagined: imagined transitions
    :param real_ratio: fraction of each batch drawn from real data, in [0, 1]
    :param gamma: the agent's discount, for imagined rows when the real buffer returns n-step discounts

    Example::

        import gymnasium as gym, torch
        from stable_baselines3 import SAC
        from sb3_plugins.replay import ImaginedReplay, MixedReplayBuffer

        agent = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=10, seed=0).learn(20)
        imagined = ImaginedReplay(100, 3, (1,), torch.float32, "cpu", seed=0)
        mixed = MixedReplayBuffer(agent.replay_buffer, imagined, real_ratio=0.5)
        print(mixed.sample(8).observations.shape)  # all real until something is imagined
    """

    def __init__(self, real: ReplayBuffer, imagined: ImaginedReplay, real_ratio: float, gamma: float = 0.99):
        self.real = real
        self.imagined = imagined
        self.real_ratio = float(real_ratio)
        self.gamma = float(gamma)

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        n_real = batch_size if len(self.imagined) == 0 else int(round(self.real_ratio * batch_size))
        n_imagined = batch_size - n_real
        if n_imagined == 0:
            return self.real.sample(batch_size, env=env)
        imagined = self.imagined.sample(n_imagined)
        if env is not None:  # a VecNormalize: SB3 normalises the raw rows it stored at sampling time, likewise these
            imagined = _normalized(imagined, env)
        if n_real == 0:
            return imagined
        real = self.real.sample(n_real, env=env)
        return ReplayBufferSamples(
            *(torch.cat([r, i.to(r.dtype)]) for r, i in zip(real[:5], imagined[:5])),
            # Imagined rows are one-step transitions: their discount is gamma.
            None
            if real.discounts is None
            else torch.cat([real.discounts, torch.full_like(imagined.rewards, self.gamma)]),
        )

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Pickled (SB3's save_replay_buffer, CheckpointCallback) as the agent's own buffer: the file holds the real
        # transitions, and load_replay_buffer gets the ReplayBuffer it expects. DynaCallback's state file keeps the
        # imagined ones (DynaCallback.save).
        # (copy.copy of the unpickled real buffer: a standard-library callable, so the file needs no dream-envs)
        return copy.copy, (self.real,)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this class does not define: everything else is the real buffer's.
        # not set yet (e.g. while unpickling)
        if name in ("real", "imagined", "real_ratio", "gamma"):
            raise AttributeError(name)
        return getattr(self.real, name)


def _normalized(samples: ReplayBufferSamples, env: Any) -> ReplayBufferSamples:
    """Imagined rows (raw units) scaled as SB3 scales the real ones it samples with a VecNormalize ``env``."""

    def obs(x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(env.normalize_obs(x.cpu().numpy()), dtype=x.dtype, device=x.device)

    reward = torch.as_tensor(env.normalize_reward(samples.rewards.cpu().numpy()), device=samples.rewards.device)
    return samples._replace(observations=obs(samples.observations), next_observations=obs(samples.next_observations),
                            rewards=reward.to(samples.rewards.dtype))  # fmt: skip
