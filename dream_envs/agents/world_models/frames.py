"""Real experience as World Models needs it: every frame once (uint8, in RAM), and episodes as runs of frames.

An episode of ``n`` steps holds ``n + 1`` consecutive frames (the last one is the terminal or latest frame) and
``n`` actions, rewards and termination flags. At 64x64x3, 20,000 frames take 245 MB.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from dream_envs.agents.world_models.mdn_rnn import LatentSequences
from dream_envs.spaces import encode_action

__all__ = ["FrameStore"]


class _Growable:
    """A numpy array that doubles its capacity when full (amortised O(1) appends, no list of small arrays)."""

    def __init__(self, shape: tuple[int, ...], dtype: Any):
        self.data, self.size = np.zeros((16, *shape), dtype), 0

    def append(self, row: Any) -> None:
        if self.size == len(self.data):
            self.data = np.concatenate([self.data, np.zeros_like(self.data)])
        self.data[self.size] = row
        self.size += 1

    def view(self) -> np.ndarray:
        return self.data[: self.size]


class FrameStore:
    """Frames and the actions, rewards and terminations between them, grouped into episodes.

    :param frame_shape: shape of one frame (``64 x 64 x 3``)
    :param action_space: the env's action space (actions are stored raw)

    Example::

        import numpy as np
        from gymnasium import spaces
        from dream_envs.agents.world_models import FrameStore

        store = FrameStore((64, 64, 3), spaces.Discrete(2))
        frame = np.zeros((64, 64, 3), np.uint8)
        store.start_episode(frame)
        store.add_step(1, 1.0, frame, terminated=True)
        print(len(store), store.num_steps, store.episode_start_frames())  # 2 frames, 1 step, [0]
    """

    def __init__(self, frame_shape: tuple[int, ...], action_space: spaces.Space):
        self.action_space = action_space
        self.frames = _Growable(tuple(frame_shape), np.uint8)
        self.actions = _Growable(action_space.shape, action_space.dtype)
        self.rewards, self.terminated = _Growable((), np.float32), _Growable((), np.bool_)
        self.episodes: list[list[int]] = []  # [first frame, first step, steps, terminated]

    def __len__(self) -> int:
        return self.frames.size

    @property
    def num_steps(self) -> int:
        return self.rewards.size

    def start_episode(self, frame: np.ndarray) -> None:
        """The first frame of a new episode (the previous one, if not terminated, counts as cut off)."""
        self.episodes.append([self.frames.size, self.rewards.size, 0, 0])
        self.frames.append(frame)

    def add_step(self, action: Any, reward: float, next_frame: np.ndarray, terminated: bool) -> None:
        """One real step of the current episode and the frame it led to."""
        if not self.episodes or self.episodes[-1][3]:
            raise RuntimeError("add_step() needs an open episode: call start_episode(first_frame) first")
        self.actions.append(action)
        self.rewards.append(reward)
        self.terminated.append(terminated)
        self.frames.append(next_frame)
        self.episodes[-1][2] += 1
        self.episodes[-1][3] = int(terminated)

    def all_frames(self) -> np.ndarray:
        """``N x H x W x 3`` uint8 (a view: no copy)."""
        return self.frames.view()

    def episode_start_frames(self) -> np.ndarray:
        """Indices of the first frame of every episode."""
        return np.asarray([episode[0] for episode in self.episodes], np.int64)

    def sequences(self, latents: torch.Tensor, max_length: int) -> LatentSequences:
        """The episodes in latent space (``latents``: ``N x Z``, one row per frame), cut into pieces of at most
        ``max_length`` steps and padded into a :class:`LatentSequences` (episodes without a step are skipped)."""
        pieces = []  # (first frame, first step, steps, terminated at the end)
        for first_frame, first_step, steps, terminated in self.episodes:
            for offset in range(0, steps, max_length):
                length = min(max_length, steps - offset)
                ends_episode = offset + length == steps
                pieces.append((first_frame + offset, first_step + offset, length, bool(terminated) and ends_episode))
        if not pieces:
            raise ValueError("no complete step stored yet: M needs at least one (frame, action, next frame)")
        longest, z_size, device = max(p[2] for p in pieces), latents.shape[1], latents.device
        encoded = encode_action(self.action_space, torch.as_tensor(self.actions.view())).to(device)  # (steps, A)
        rewards = torch.as_tensor(self.rewards.view(), device=device)
        z = torch.zeros(len(pieces), longest + 1, z_size, device=device)
        actions = torch.zeros(len(pieces), longest, encoded.shape[1], device=device)
        reward_seq = torch.zeros(len(pieces), longest, device=device)
        terminated_seq = torch.zeros(len(pieces), longest, device=device)
        mask = torch.zeros(len(pieces), longest, dtype=torch.bool, device=device)
        for row, (first_frame, first_step, length, terminated) in enumerate(pieces):
            z[row, : length + 1] = latents[first_frame : first_frame + length + 1]
            actions[row, :length] = encoded[first_step : first_step + length]
            reward_seq[row, :length] = rewards[first_step : first_step + length]
            terminated_seq[row, length - 1] = float(terminated)
            mask[row, :length] = True
        lengths = torch.as_tensor([p[2] for p in pieces], device=device)
        return LatentSequences(z, actions, reward_seq, terminated_seq, mask, lengths)
