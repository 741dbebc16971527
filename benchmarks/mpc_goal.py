"""MPCAgent() with its defaults on a goal-reaching env nobody here tuned for, with and without its terminal value.

A new user's trial (issue 14's "defaults that transfer") reported that MPCAgent's terminal value, fitted with fewer
rounds than the default (``value_kwargs={"rounds": 1}``), peaked where the random data lie and pulled the planner
away from a goal the data never reached. This measures the default agent on that env: a point on a line, ``x`` in
[-5, 5], velocity ``v <- 0.9 v + 0.1 a`` with ``a`` in [-1, 1], reward ``-|x - 1|``, the episode ends within 0.1
of the goal ``x = 1`` (100 steps at most); starts uniform in [-1, 0] at rest.

    python benchmarks/mpc_goal.py                # seeds 0 and 1, 400 real steps each, both variants
    python benchmarks/mpc_goal.py --steps 100 --seeds 1 --out /tmp/mpc_goal   # a quick look

Writes ``docs/mpc_goal.json`` and ``docs/mpc_goal.md``: per variant and seed, the return and length of 3
deterministic real episodes after training, the learned terminal value along the line at rest, and the seconds
spent training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from dream_envs.agents import MPCAgent
from dream_envs.io import atomic_write_text

VARIANTS = {"MPCAgent(env)": {}, "MPCAgent(env, terminal_value=False)": {"terminal_value": False}}
VALUE_AT = [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0]


class PointToGoal(gym.Env):
    """The trial's env: a point that must reach x = 1 (see the module docstring)."""

    observation_space = gym.spaces.Box(-5.0, 5.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.v, self.t = float(self.np_random.uniform(-1.0, 0.0)), 0.0, 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.x, self.v], np.float32)

    def step(self, action):
        self.v = 0.9 * self.v + 0.1 * float(np.clip(np.asarray(action).reshape(-1)[0], -1.0, 1.0))
        self.x = float(np.clip(self.x + self.v, -5.0, 5.0))
        self.t += 1
        distance = abs(self.x - 1.0)
        return self._obs(), -distance, distance < 0.1, self.t >= 100, {}


def measure(variant: str, seed: int, steps: int) -> dict:
    agent = MPCAgent(PointToGoal(), seed=seed, **VARIANTS[variant])
    started = time.perf_counter()
    agent.learn(steps)
    seconds = time.perf_counter() - started
    returns, lengths = [], []
    for episode in range(3):
        env = PointToGoal()
        obs, _ = env.reset(seed=100 + episode)
        total, length, done = 0.0, 0, False
        while not done:
            action, _ = agent.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, length, done = total + reward, length + 1, terminated or truncated
        returns.append(round(total, 2))
        lengths.append(length)
    value = None
    if agent.value is not None and agent.model_fits > 0:
        states = torch.tensor([[x, 0.0] for x in VALUE_AT], dtype=torch.float32)
        value = [round(float(v), 1) for v in agent.value(states).detach().reshape(-1)]
    return {"variant": variant, "seed": seed, "real_steps": steps, "returns": returns, "lengths": lengths,
            "value_at_rest": value, "train_seconds": round(seconds, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="real steps of training per run")
    parser.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1")
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parents[1] / "docs"), help="folder for the results"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(variant, seed, args.steps) for seed in range(args.seeds) for variant in VARIANTS]
    out = Path(args.out)
    atomic_write_text(out / "mpc_goal.json", json.dumps({"value_at_x": VALUE_AT, "runs": rows}, indent=1) + "\n")
    lines = [
        "# MPCAgent() on a goal it must find (benchmarks/mpc_goal.py)",
        "",
        f"`python benchmarks/mpc_goal.py --steps {args.steps} --seeds {args.seeds}`; 3 deterministic real "
        "episodes after training (a return near 0 in a few steps reaches the goal; -90 or less in 100 steps "
        f"does not); the terminal value at rest at x = {VALUE_AT}.",
        "",
        "| variant | seed | returns | lengths | terminal value at rest | train s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| `{r['variant']}` | {r['seed']} | {r['returns']} | {r['lengths']} | {r['value_at_rest'] or '-'} | "
              f"{r['train_seconds']} |" for r in rows]  # fmt: skip
    atomic_write_text(out / "mpc_goal.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
