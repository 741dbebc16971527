"""Is World Models' dream honest where it has data? Random-action episode lengths in the dream vs the real env
(docs/world_models.md).

    python benchmarks/world_models_honesty.py
    python benchmarks/world_models_honesty.py --failures --seed 1   # how the controller's real episodes end

Trains the default WorldModels on pixel CartPole-v1 (seed 0) for 4,000 and 8,000 real frames; after each, plays 512
dream episodes with uniformly random actions (tau 1.15 and 2.0, capped at 500 steps) and compares their length with
200 real random-action episodes. Equal lengths mean M is honest on the data it has seen, so a controller that lives
far longer in the dream than in the real env is exploiting M off that data.

With ``--failures``: trains for 12,000 real frames (3 iterations) and, after each, plays 10 deterministic real
episodes with the controller and says how each ended: the pole past 12 degrees, the cart off the track, or the
time limit. It shows which part of the dream lies to the controller.
"""

from __future__ import annotations

import argparse
from collections import Counter

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


def real_endings(agent, episodes: int = 10, seed: int = 20_000) -> tuple[list[int], Counter]:
    """Lengths of ``episodes`` deterministic real episodes of the controller, and how they ended."""
    from dream_envs.envs import PixelObservation

    env = PixelObservation(gym.make("CartPole-v1", render_mode="rgb_array"))
    lengths, endings = [], Counter()
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        memory, start, steps = None, np.ones(1, dtype=bool), 0
        while True:
            action, memory = agent.predict(obs[None], memory, start, deterministic=True)
            obs, _, terminated, truncated, _ = env.step(int(action[0]))
            start[:], steps = False, steps + 1
            if terminated or truncated:
                break
        cartpole = env.unwrapped
        x, _, theta, _ = cartpole.state
        ending = "time limit"
        if abs(theta) > cartpole.theta_threshold_radians:
            ending = "pole"
        elif abs(x) > cartpole.x_threshold:
            ending = "cart"
        lengths.append(steps)
        endings[ending] += 1
    return lengths, endings


def failures(seed: int) -> None:
    from dream_envs.agents import WorldModels

    torch.set_num_threads(1)
    agent = WorldModels("CartPole-v1", seed=seed, device="cpu")
    for _ in range(3):
        agent.learn(4000, reset_num_timesteps=False)
        lengths, endings = real_endings(agent)
        print(f"seed {seed}, {agent.num_timesteps} real frames: dream return {agent.last_dream_return:.1f}; real "
              f"episode lengths {lengths}; ended by {dict(endings)}", flush=True)  # fmt: skip


def main() -> None:
    from dream_envs.agents import WorldModels

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failures", action="store_true", help="how the controller's real episodes end")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.failures:
        failures(args.seed)
        return
    torch.set_num_threads(1)
    agent = WorldModels("CartPole-v1", seed=args.seed, device="cpu")
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
