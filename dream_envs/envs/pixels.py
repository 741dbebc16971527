"""Pixel observations: the rendered frame, resized to a small square image, replaces the env's observation.

World Models (Ha & Schmidhuber 2018) learns from 64x64 RGB frames only; this wrapper is how a state-vector env
such as CartPole-v1 becomes such a task: the agent never sees the state vector.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["PixelObservation", "is_image_space", "resize_frames"]


def is_image_space(space: Any) -> bool:
    """True for an ``H x W x 3`` uint8 Box: an RGB image observation."""
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[-1] == 3


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize RGB frames to ``size x size`` by area averaging (each output pixel is the mean of the input pixels
    it covers, so a thin pole stays visible as a fainter line instead of vanishing as nearest-neighbour would).

    :param frames: ``H x W x 3`` or ``B x H x W x 3`` uint8
    :return: ``size x size x 3`` or ``B x size x size x 3`` uint8 (a frame already of that size is returned as is)
    """
    frames = np.asarray(frames)
    if frames.shape[-3:-1] == (size, size):
        return frames.astype(np.uint8, copy=False)
    from PIL import Image  # Pillow comes with matplotlib, a dependency; its BOX filter is area averaging

    def one(frame: np.ndarray) -> np.ndarray:
        image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
        return np.asarray(image.resize((size, size), Image.Resampling.BOX))

    if frames.ndim == 3:
        return one(frames)
    return np.stack([one(frame) for frame in frames]) if len(frames) else np.zeros((0, size, size, 3), np.uint8)


class PixelObservation(gym.ObservationWrapper):
    """Replace the observation by the env's rendered RGB frame, resized to ``size x size x 3`` uint8.

    The env must have been made with ``render_mode="rgb_array"``. Rewards, terminations and the action space are
    the env's own; only what the agent sees changes.

    :param env: a gymnasium env made with ``render_mode="rgb_array"``
    :param size: side of the square output frame in pixels (64 in World Models)

    Example::

        import gymnasium as gym
        from dream_envs.envs import PixelObservation

        env = PixelObservation(gym.make("CartPole-v1", render_mode="rgb_array"))
        obs, info = env.reset(seed=0)
        print(obs.shape, obs.dtype)  # (64, 64, 3) uint8
    """

    def __init__(self, env: gym.Env, size: int = 64):
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 8:
            raise ValueError(f"size must be an integer >= 8 (pixels per side), got {size!r}")
        render_mode = getattr(env, "render_mode", None)
        if render_mode != "rgb_array":
            name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
            raise ValueError(
                f"PixelObservation needs an env that renders RGB frames, but {name} has render_mode="
                f"{render_mode!r}; make it with gym.make({name!r}, render_mode='rgb_array')"
            )
        super().__init__(env)
        self.size = int(size)
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)

    def observation(self, observation: Any) -> np.ndarray:
        frame = self.env.render()
        if frame is None or np.asarray(frame).ndim != 3 or np.asarray(frame).shape[-1] != 3:
            shape = None if frame is None else np.asarray(frame).shape
            raise RuntimeError(f"render() returned {shape if shape is not None else 'None'}, not an H x W x 3 frame")
        return resize_frames(frame, self.size)
