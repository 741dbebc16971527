"""World Models on CarRacing-v3, the paper's task: an optional smoke-scale run (docs/world_models_carracing.md).

    pip install "gymnasium[box2d]"                  # not a dream-envs dependency
    python benchmarks/world_models_carracing.py     # 2 iterations of 2,000 frames, seed 0: 156 s on 1 core

CarRacing observes 96x96 RGB frames (resized to 64x64 for V) and takes Box actions (steer, gas, brake), which the
linear controller's tanh-squashed outputs cover. The budget here is tiny next to the paper's (10,000 random
rollouts of up to 1,000 frames for V and M): the run shows that the same agent trains and acts on an image env with
continuous actions, and reports what it measures; it is not a reproduction of the paper's score (906 +- 21).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "CarRacing-v3"
AGENT = dict(vae_epochs=10, mdn_epochs=60, frames_per_iteration=2000, cma_generations=10, cma_popsize=16,
             dream_episodes=4, max_dream_steps=300, device="cpu")  # fmt: skip


def main() -> None:
    import gymnasium as gym
    from stable_baselines3.common.evaluation import evaluate_policy

    from dream_envs.agents import WorldModels
    from dream_envs.io import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=3)
    args = parser.parse_args()
    try:
        eval_env = gym.make(ENV_ID)
    except gym.error.DependencyNotInstalled as error:
        raise SystemExit(f"{ENV_ID} needs Box2D: pip install \"gymnasium[box2d]\" ({error})") from None
    torch.set_num_threads(1)
    agent = WorldModels(ENV_ID, seed=args.seed, **AGENT)
    eval_env.reset(seed=10_000 + args.seed)
    started, rows = time.perf_counter(), []
    for _ in range(args.iterations):
        agent.learn(AGENT["frames_per_iteration"], reset_num_timesteps=False)
        real_mean, real_std = evaluate_policy(agent, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True,
                                              warn=False)  # fmt: skip
        rows.append({"frames": agent.num_timesteps, "real_return": round(float(real_mean), 1),
                     "real_return_std": round(float(real_std), 1), "dream_return": round(agent.last_dream_return, 1),
                     "wall_seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    table = "\n".join(f"| {r['frames']} | {r['real_return']} ± {r['real_return_std']} | {r['dream_return']} | "
                      f"{r['wall_seconds']:.0f} |" for r in rows)  # fmt: skip
    atomic_write_text(ROOT / "docs" / "world_models_carracing.md", f"""# World Models on CarRacing-v3 (smoke scale)

`python benchmarks/world_models_carracing.py --iterations {args.iterations} --seed {args.seed}` (Python
{platform.python_version()}, torch {torch.__version__}, one CPU thread). `WorldModels("{ENV_ID}")` on the env's own
96x96 frames; actions are the linear controller's outputs squashed into the Box bounds. After every iteration
(collect, fit V and M, CMA-ES in the dream) the controller drives {args.eval_episodes} deterministic real episodes.

| real frames | real return | dream return | wall s |
|---|---|---|---|
{table}

Settings: `{json.dumps(AGENT)}` (the other arguments are WorldModels' defaults). This is a tiny budget next to the
paper's 10,000 random rollouts: it shows the agent trains and acts on an image env with continuous actions, not
the paper's score (906 +- 21). CarRacing's reward is +1000/N per track tile visited and -0.1 per frame, so a
return near -0.1 x frames means the car visited almost no tile.
""")
    print(f"wrote docs/world_models_carracing.md; mean real return per iteration {[r['real_return'] for r in rows]}, "
          f"{np.round(time.perf_counter() - started):.0f} s")


if __name__ == "__main__":
    main()
