"""Rewards of their kind: how far the model's imagined rewards are from the real ones, with the reward clipped to
the range of all real rewards, or to the real rewards of the step's kind (terminal or not, as the termination head
judges it; what `EnsembleDynamics.step` does since issue 14).

    python benchmarks/reward_kinds.py            # writes docs/reward_kinds.md and docs/reward_kinds.json (~5 min)

For CartPole-v1, InvertedPendulum-v5, InvertedDoublePendulum-v5, Hopper-v5 and Walker2d-v5, a model of
DynaCallback's default size (5 members, 4 elites, 3 x 200, the default termination head) fitted with the default fit
schedule on 250 and 1,500 random-action steps. On 5,000 fresh random-action transitions: the elites' mean reward
prediction ("raw"), clipped to `reward_range` ("all real rewards") and to the range of its kind ("its kind": the
termination head's verdict picks `terminal_reward_range` or `nonterminal_reward_range`), each one's mean absolute
error against the real reward, over all rows and over the rows where the head is right or wrong. MountainCarContinuous,
Acrobot and Pendulum are not here: random actions never reach MountainCarContinuous's or Acrobot's goal in these few
steps and Pendulum never ends an episode, so the fit never knows both kinds and the two clips are the same.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from dream_envs import EnsembleDynamics, TransitionBuffer
from dream_envs.io import atomic_write_text

ENVS = ("CartPole-v1", "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Hopper-v5", "Walker2d-v5")
FIT_STEPS = (250, 1500)
CLIPS = ("raw", "all real rewards", "its kind")
GROUPS = {  # rows by the termination head's verdict against the real flag
    "all rows": lambda head, real: np.ones_like(real),
    "head right": lambda head, real: head == real,
    "head misses an end": lambda head, real: ~head & real,
    "head ends a step that goes on": lambda head, real: head & ~real,
}


def measure(env_id: str, fit_steps: int, test) -> dict:
    env = gym.make(env_id)
    buffer = TransitionBuffer.from_env(env).collect(env, fit_steps, seed=0)
    model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=5, num_elites=4, device="cpu",
                             seed=0)  # fmt: skip
    model.fit(buffer, seed=0)
    # The elites' mean, as step(propagation="mean", deterministic=True) takes it, before and after each clip.
    prediction = model.predict(test.obs, test.action)
    raw = prediction.reward_mean[model.elite_idx].mean(0)
    step = model.step(test.obs, test.action, propagation="mean", deterministic=True)
    clipped = {"raw": raw, "all real rewards": raw.clamp(*model.reward_range), "its kind": step.reward}
    head = step.terminated.cpu().numpy() if step.terminated is not None else np.zeros(len(raw), dtype=bool)
    real_terminal = test.terminated.astype(bool)
    errors = {name: np.abs(value.cpu().numpy() - test.reward) for name, value in clipped.items()}
    groups = {}
    for group, select in GROUPS.items():
        rows = select(head, real_terminal).astype(bool)
        groups[group] = {"rows": int(rows.sum()), **{name: float(errors[name][rows].mean()) if rows.any() else None
                                                      for name in CLIPS}}  # fmt: skip
    ranges = {name: getattr(model, name) for name in ("reward_range", "nonterminal_reward_range",
                                                       "terminal_reward_range")}  # fmt: skip
    return {
        "env": env_id,
        "fit_steps": fit_steps,
        "terminal_rows": int(buffer.transitions().terminated.sum()),
        "ranges": {k: None if v is None else [float(x) for x in v] for k, v in ranges.items()},
        "groups": groups,
    }


def _cell(value) -> str:
    return "" if value is None else f"{value:.3f}"


def write(records: list[dict], out: Path) -> None:
    atomic_write_text(out / "reward_kinds.json", json.dumps(records, indent=1) + "\n")
    lines = [
        "# Rewards of their kind: imagined rewards against the real ones",
        "",
        f"Made by `python benchmarks/reward_kinds.py` (torch {torch.__version__}, Python {platform.python_version()});"
        " what it measures is in the script's docstring. Mean absolute error of the elites' mean reward against the"
        " real reward on 5,000 fresh random-action transitions: raw, clipped to all real rewards (before issue 14's"
        " change), clipped to the real rewards of the step's kind as the termination head judges it (ships).",
        "",
        "| env | random steps | terminal rows | rows | n | raw | all real rewards | its kind (ships) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        for group, cells in record["groups"].items():
            lines.append(f"| {record['env']} | {record['fit_steps']:,} | {record['terminal_rows']} | {group} | "
                         f"{cells['rows']:,} | " + " | ".join(_cell(cells[name]) for name in CLIPS) + " |")  # fmt: skip
    lines += ["", "Reward ranges each model recorded (all, steps that went on, terminal steps):", ""]
    for record in records:
        ranges = ", ".join("none" if v is None else f"[{v[0]:.3g}, {v[1]:.3g}]" for v in record["ranges"].values())
        lines.append(f"- {record['env']}, {record['fit_steps']:,} random steps: {ranges}")
    atomic_write_text(out / "reward_kinds.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = []
    for env_id in args.envs:
        env = gym.make(env_id)
        test = TransitionBuffer.from_env(env).collect(env, 5000, seed=1).transitions()
        for fit_steps in FIT_STEPS:
            records.append(measure(env_id, fit_steps, test))
            overall = records[-1]["groups"]["all rows"]
            print(env_id, fit_steps, {name: round(overall[name], 3) for name in CLIPS}, flush=True)
    write(records, args.out)


if __name__ == "__main__":
    main()
