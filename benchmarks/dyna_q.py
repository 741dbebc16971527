"""Tabular Dyna-Q: real episodes to solve vs planning steps, 10 seeds (docs/dyna_q.md, docs/dyna_q.png).

    python benchmarks/dyna_q.py                  # every env, planning 0 / 5 / 50, uniform and prioritized
    python benchmarks/dyna_q.py --envs lake      # one of: lake, slippery, taxi

A run's figure is the finished real-episode count at its first check (deterministic greedy episodes of a fresh
env) whose mean return reaches the env's threshold. Acting and planning draw from separate generators, so for
one seed the agents behave identically until planning has changed a Q value: the comparison is paired.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from dream_envs.agents import DynaQ
from dream_envs.io import atomic_write_text, save_figure
from sb3_plugins import EpisodesToThreshold

ROOT = Path(__file__).resolve().parents[1]
# name -> env id, make kwargs, threshold, check every (episodes), episodes per check, step budget, agent kwargs
ENVS = {
    "lake": dict(env="FrozenLake-v1", kwargs={"is_slippery": False}, threshold=1.0, every=1, episodes=1,
                 budget=100_000, agent={}),
    # The spec's threshold (0.70) is close to the optimum (~0.74 success), so the greedy policy must be nearly
    # optimal: a long horizon (gamma 0.99) and 200 check episodes.
    "slippery": dict(env="FrozenLake-v1", kwargs={"is_slippery": True}, threshold=0.70, every=50, episodes=200,
                     budget=300_000, agent={"gamma": 0.99}),
    "taxi": dict(env="Taxi-v4", kwargs={}, threshold=8.0, every=25, episodes=50, budget=300_000,
                 agent={"gamma": 0.99, "learning_rate": 0.5}),
}  # fmt: skip
PLANNING = [(0, False), (5, False), (50, False), (5, True), (50, True)]
SEEDS = range(10)


class FirstSuccess(BaseCallback):
    """The real episode (1-based) that first ends with a positive reward: until then, planning had nothing to
    propagate, so episodes before it measure luck, not planning."""

    def __init__(self):
        super().__init__()
        self.episodes, self.first = 0, None

    def _on_step(self) -> bool:
        if self.locals["dones"][0]:
            self.episodes += 1
            if self.first is None and self.locals["rewards"][0] > 0:
                self.first = self.episodes
        return True


def run(name: str, planning_steps: int, prioritized: bool, seed: int) -> dict:
    import gymnasium as gym

    setup = ENVS[name]
    check = EpisodesToThreshold(setup["env"], setup["threshold"], every=setup["every"], n_episodes=setup["episodes"],
                                seed=10_000 + seed, env_kwargs=setup["kwargs"])  # fmt: skip
    env = gym.make(setup["env"], **setup["kwargs"])
    agent = DynaQ(env, planning_steps=planning_steps, prioritized_sweeping=prioritized, seed=seed, **setup["agent"])
    started = time.perf_counter()
    first = FirstSuccess()
    agent.learn(setup["budget"], callback=[first, check])
    return {"env": name, "env_id": setup["env"], "planning_steps": planning_steps, "prioritized": prioritized,
            "seed": seed, "first_success": first.first, "episodes_to_solve": check.hit,
            "real_steps": agent.num_timesteps, "episodes": agent.episodes, "planning_updates": agent.planning_updates,
            "curve": check.curve, "wall_seconds": round(time.perf_counter() - started, 2)}  # fmt: skip


def _label(planning_steps: int, prioritized: bool) -> str:
    return "Q-learning (0)" if planning_steps == 0 else f"{'prioritized' if prioritized else 'Dyna-Q'} {planning_steps}"


def write_docs(records: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["# Tabular Dyna-Q: real episodes to solve vs planning", "",
             f"`python benchmarks/dyna_q.py` (Python {platform.python_version()}, 1 core). 10 seeds per row. A run's "
             "figure is the number of finished real episodes at its first passing check (greedy episodes of a fresh "
             "env); `> N` means never within its step budget. Acting and planning use separate random generators, "
             "so one seed's agents act alike until planning changes a Q value.", ""]  # fmt: skip
    fig, axes = plt.subplots(1, len(ENVS), figsize=(5 * len(ENVS), 3.8))
    for ax, (name, setup) in zip(np.atleast_1d(axes), ENVS.items()):
        env_records = [r for r in records if r["env"] == name]
        if not env_records:
            continue
        kwargs = ", ".join(f"{k}={v}" for k, v in setup["kwargs"].items())
        lines += [f"## {setup['env']}({kwargs}): threshold {setup['threshold']}, checks of {setup['episodes']} "
                  f"episode(s) every {setup['every']} episode(s), agent {setup['agent'] or 'defaults'}", "",
                  "| planning | median episodes to solve | range | solved | median episodes after the first success "
                  "| median real steps | median wall (s) |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        labels, medians = [], []
        for planning_steps, prioritized in PLANNING:
            runs = [r for r in env_records if (r["planning_steps"], r["prioritized"]) == (planning_steps, prioritized)]
            if not runs:
                continue
            hits = np.array([r["episodes_to_solve"] if r["episodes_to_solve"] is not None else np.inf for r in runs])
            steps = np.median([r["real_steps"] for r in runs])
            after = [r["episodes_to_solve"] - r["first_success"] for r in runs
                     if r["episodes_to_solve"] is not None and r["first_success"] is not None]  # fmt: skip

            def shown(value: float, runs=runs) -> str:
                return f"{value:.0f}" if np.isfinite(value) else f"> {max(r['episodes'] for r in runs)}"

            lines.append(f"| {_label(planning_steps, prioritized)} | {shown(np.median(hits))} | {shown(hits.min())} – "
                         f"{shown(hits.max())} | {np.isfinite(hits).sum()}/{len(runs)} | "
                         f"{np.median(after) if after else float('nan'):.0f} | {steps:.0f} | "
                         f"{np.median([r['wall_seconds'] for r in runs]):.1f} |")  # fmt: skip
            ax.scatter(np.full(len(hits), len(labels)), np.where(np.isfinite(hits), hits, np.nan), s=12, alpha=0.6)
            labels.append(_label(planning_steps, prioritized))
            medians.append(np.median(hits))
        ax.plot(range(len(labels)), medians, "k_", markersize=20, label="median")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set(title=f"{setup['env']} {kwargs}", ylabel="real episodes to solve", yscale="log")
        ax.legend(fontsize=8)
        lines.append("")
    lines += ["![episodes to solve per seed, and medians](dyna_q.png)", ""]
    fig.tight_layout()
    save_figure(fig, ROOT / "docs" / "dyna_q.png")
    atomic_write_text(ROOT / "docs" / "dyna_q.md", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    args = parser.parse_args()
    path = ROOT / "docs" / "dyna_q.json"
    records = json.loads(path.read_text()) if path.exists() else []
    for name in args.envs:
        records = [r for r in records if r["env"] != name]
        for planning_steps, prioritized in PLANNING:
            for seed in SEEDS:
                records.append(run(name, planning_steps, prioritized, seed))
                keys = ("env", "planning_steps", "prioritized", "seed", "first_success", "episodes_to_solve")
                print(json.dumps({k: records[-1][k] for k in keys}), flush=True)
        atomic_write_text(path, json.dumps(records, indent=1))
    write_docs(records)


if __name__ == "__main__":
    main()
