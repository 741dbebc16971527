"""The ``Dream-*`` ids: one per shipped model, registered with gymnasium when ``dream_envs`` is imported."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import gymnasium as gym

__all__ = ["DREAM_IDS", "pretrained_model_path", "register_dream_envs"]

# dream id -> (real env id, episode length of the real env's TimeLimit, reward threshold of the real env)
DREAM_IDS: dict[str, tuple[str, int, float | None]] = {
    "Dream-CartPole-v0": ("CartPole-v1", 500, 475.0),
    "Dream-Acrobot-v0": ("Acrobot-v1", 500, -100.0),
    "Dream-Pendulum-v0": ("Pendulum-v1", 200, None),
}


def pretrained_model_path(env_id: str) -> Path:
    """Path of the model shipped for the real env ``env_id`` (e.g. ``"CartPole-v1"``)."""
    known = sorted(real for real, _, _ in DREAM_IDS.values())
    if env_id not in known:
        raise ValueError(f"no shipped model for env_id={env_id!r}; shipped: {known}")
    return Path(str(resources.files("dream_envs.envs") / "pretrained" / f"{env_id}.pt"))


def register_dream_envs() -> None:
    """Register every id in :data:`DREAM_IDS` (idempotent: re-registering is skipped)."""
    for dream_id, (env_id, max_steps, threshold) in DREAM_IDS.items():
        if dream_id in gym.registry:
            continue
        gym.register(
            id=dream_id,
            entry_point="dream_envs.envs.dream_env:DreamEnv",
            max_episode_steps=max_steps,
            reward_threshold=threshold,
            # The cutoff is on by default: a shipped dream should stop where its model stops being trustworthy.
            kwargs={
                "model_path": str(pretrained_model_path(env_id)),
                "env_id": env_id,
                "uncertainty_threshold": "auto",
            },
        )
