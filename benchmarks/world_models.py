"""World Models on CartPole-v1 from pixels only: real return of a controller trained only in the dream
(docs/world_models.md, docs/world_models.json).

    python benchmarks/world_models.py                  # 3 seeds, 2 at a time, 1 torch thread each
    python benchmarks/world_models.py --seeds 0 --jobs 1
    python benchmarks/world_models.py --agent '{"vae_epochs": 10}'   # a variant: printed, the docs are kept

Target: mean real return >= 195 (10 deterministic episodes of a fresh PixelObservation env) with <= 20,000 real
frames. After every iteration (collect, fit V and M, CMA-ES in the dream) the controller plays the real env; a
seed stops at the first check that reaches the threshold (its frames count as frames used) or at the budget.
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ENV_ID, THRESHOLD, BUDGET, EVAL_EPISODES = "CartPole-v1", 195.0, 20_000, 10
# V and M are fitted longer than WorldModels' defaults (vae_epochs 2, mdn_epochs 30): with those, 1 of 3 seeds
# reached the target; with these, 3 of 3 (docs/world_models.md).
AGENT = dict(latent_size=16, hidden_size=64, n_mixtures=5, vae_channels=(8, 16, 32, 64), tau=1.15,
             frames_per_iteration=4000, vae_epochs=10, mdn_epochs=60, cma_generations=30, cma_popsize=32,
             dream_episodes=8, max_dream_steps=500, device="cpu")  # fmt: skip


def run_seed(seed: int, stop: bool = True) -> dict:
    import gymnasium as gym
    from stable_baselines3.common.evaluation import evaluate_policy

    from dream_envs.agents import WorldModels
    from dream_envs.envs import PixelObservation

    torch.set_num_threads(1)
    agent = WorldModels(ENV_ID, seed=seed, **AGENT)
    eval_env = PixelObservation(gym.make(ENV_ID, render_mode="rgb_array"))
    eval_env.reset(seed=10_000 + seed)
    started, curve, hit = time.perf_counter(), [], None
    while agent.num_timesteps < BUDGET:
        agent.learn(min(AGENT["frames_per_iteration"], BUDGET - agent.num_timesteps), reset_num_timesteps=False)
        real_mean, real_std = evaluate_policy(agent, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True,
                                              warn=False)  # fmt: skip
        curve.append({"frames": agent.num_timesteps, "real_return": round(float(real_mean), 1),
                      "real_return_std": round(float(real_std), 1), "dream_return": round(agent.last_dream_return, 1),
                      "wall_seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
        print(f"seed {seed}: {curve[-1]}", flush=True)
        if real_mean >= THRESHOLD and hit is None:
            hit = agent.num_timesteps
            if stop:
                break
    last = curve[-1]
    return {"seed": seed, "frames_to_threshold": hit, "frames_used": last["frames"], "tau": AGENT["tau"],
            "dream_return": last["dream_return"], "real_return": last["real_return"],
            "real_return_std": last["real_return_std"], "reached": hit is not None,
            "wall_seconds": round(time.perf_counter() - started, 1), "curve": curve}  # fmt: skip


def write_docs(records: list[dict], command: str, commit: str) -> None:
    from dream_envs.io import atomic_write_text

    reached = sum(r["reached"] for r in records)
    rows = "\n".join(
        f"| {r['seed']} | {r['frames_to_threshold'] if r['reached'] else 'not reached'} | {r['frames_used']} | "
        f"{r['tau']} | {r['dream_return']} | {r['real_return']} ± {r['real_return_std']} | {r['wall_seconds']:.0f} |"
        for r in records
    )
    curves = "\n".join(
        f"- seed {r['seed']}: " + ", ".join(f"{c['frames']}: real {c['real_return']} / dream {c['dream_return']}"
                                            for c in r["curve"])  # fmt: skip
        for r in records
    )
    checks = [c for r in records for c in r["curve"]]
    saturated = sum(c["dream_return"] >= 0.9 * AGENT["max_dream_steps"] for c in checks)
    gap = np.mean([r["dream_return"] - r["real_return"] for r in records])
    text = f"""# World Models on pixel CartPole-v1

`WorldModels` (V: ConvVAE, M: MDN-RNN, C: linear on `[z, h]` trained by CMA-ES ONLY in the dream) on
`PixelObservation(gym.make("CartPole-v1", render_mode="rgb_array"))`: the controller sees 64x64 frames, never the
state vector. Target: mean real return >= {THRESHOLD:.0f} (10 deterministic episodes on a fresh real env, checked
after every iteration) with <= {BUDGET:,} real frames. Reached on **{reached}/{len(records)} seeds**.

Command: `{command}` at commit `{commit}` (1 torch thread per seed, seeds 2 at a time on
the 2-core machine, shared with other work, so wall times are upper bounds).

| seed | frames at first check >= {THRESHOLD:.0f} | frames used | tau | dream return | real return | wall s |
|---|---|---|---|---|---|---|
{rows}

Dream return: the chosen controller's mean return over 64 fresh dream episodes (capped at
{AGENT["max_dream_steps"]} steps); real return: the same controller on the real env. Their gap is the dream's
honesty: a dream return far above the real one means the controller exploits M. Here the dream return is within
10% of its cap at {saturated} of {len(checks)} checks, and exceeds the real return by {gap:.0f} on average at the last
check (above 0: the dream is easier than the real env, and a controller can live on M's mistakes).

Every check (real frames: real return / dream return):

{curves}

Settings: `{json.dumps(AGENT)}`. Why these sizes: the paper's VAE widths (32-64-128-256) cost 4.3 ms per frame
per training step on one CPU thread; 8-16-32-64 cost 0.66 ms and still encode cart and pole; latent 16 and LSTM 64
are enough for CartPole's 4-dimensional state. CarRacing-v3 (the paper's task) needs `gymnasium[box2d]`
(not a dependency): `WorldModels("CarRacing-v3")` takes its 96x96 frames (resized to 64x64) and squashes the linear
controller's outputs into the Box bounds with tanh; a smoke-scale run is in
[world_models_carracing.md](world_models_carracing.md).
"""
    atomic_write_text(ROOT / "docs" / "world_models.md", text)
    meta = {"env": ENV_ID, "threshold": THRESHOLD, "budget": BUDGET, "eval_episodes": EVAL_EPISODES,
            "agent": AGENT, "command": command, "commit": commit, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "records": records}  # fmt: skip
    atomic_write_text(ROOT / "docs" / "world_models.json", json.dumps(meta, indent=2) + "\n")


def main() -> None:
    from dream_envs.agents import WorldModels

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-stop", action="store_true", help="run every seed to the budget")
    parser.add_argument("--agent", type=json.loads, default={},
                        help='a variant: JSON of WorldModels arguments over the defaults, e.g. \'{"vae_epochs": 10}\'; '
                             "its figures are printed, docs/world_models.md is left as it is")  # fmt: skip
    args = parser.parse_args()
    unknown = set(args.agent) - set(inspect.signature(WorldModels).parameters)
    if unknown:
        parser.error(f"--agent: WorldModels has no argument(s) {sorted(unknown)}")
    AGENT.update(args.agent)  # the worker processes are forked, so they see the variant
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip() or "unknown"  # fmt: skip
    with ProcessPoolExecutor(args.jobs) as pool:
        records = list(pool.map(run_seed, args.seeds, [not args.no_stop] * len(args.seeds)))
    seeds = "" if args.seeds == [0, 1, 2] else " --seeds " + " ".join(str(s) for s in args.seeds)
    command = "python benchmarks/world_models.py" + seeds + (" --no-stop" if args.no_stop else "")
    if not args.agent:
        write_docs(records, command, commit)
    print(json.dumps(records if args.agent else [{k: v for k, v in r.items() if k != "curve"} for r in records],
                     indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
