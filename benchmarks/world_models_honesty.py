"""Is World Models' dream honest where it has data? Random-action episode lengths in the dream vs the real env
(docs/world_models.md).

    python benchmarks/world_models_honesty.py

Trains the default WorldModels on pixel CartPole-v1 (seed 0) for 4,000 and 8,000 real frames; after each, plays 512
dream episodes with uniformly random actions (tau 1.15 and 2.0, capped at 500 steps) and compares their length with
200 real random-action episodes. Equal lengths mean M is honest on the data it has seen, so a controller that lives
far longer in the dream than in the real env is exploiting M off that data.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch


def dream_random_lengths(agent, tau: float, episodes: int = 512, seed: int = 0) -> torch.Tensor:
    from dream_envs.agents.world_models import LatentDream

    generator = torch.Generator().manual_seed(seed)
    dream = LatentDream(agent.mdn, agent.start_latents, agent.action_space, tau)
    state = dream.reset(episodes, generator)
    alive, length = torch.ones(episodes, dtype=torch.bool), torch.zeros(episodes)
    for _ in range(500):
        actions = torch.randint(agent.action_space.n, (episodes,), generator=generator)
        state, _, terminated = dream.step(state, actions, generator=generator)
        length += alive
        alive &= ~terminated
        if not alive.any():
            break
    return length


def main() -> None:
    from dream_envs.agents import WorldModels

    torch.set_num_threads(1)
    agent = WorldModels("CartPole-v1", seed=0, device="cpu")
    for _ in range(2):
        agent.learn(4000, reset_num_timesteps=False)
        for tau in (1.15, 2.0):
            length = dream_random_lengths(agent, tau)
            print(f"{agent.num_timesteps} real frames, tau {tau}: random-action dream episode length "
                  f"{float(length.mean()):.1f} (median {float(length.median()):.0f})")  # fmt: skip
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    env.action_space.seed(0)
    lengths = []
    for _ in range(200):
        env.reset()
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps, done = steps + 1, terminated or truncated
        lengths.append(steps)
    print(f"real random-action episode length {np.mean(lengths):.1f} (median {np.median(lengths):.0f})")


if __name__ == "__main__":
    main()
