"""Stock SB3 agents trained ONLY in the shipped dream envs, scored on the real envs (docs/dream_training.md).

    python benchmarks/dream_training.py --jobs 2                   # every row below, each mode, seeds 0 1 2
    python benchmarks/dream_training.py --only cartpole-ppo-zoo --modes truncate --seeds 0

Each run: `train_in_dream(dream_id, algo, steps, seed, uncertainty_mode=MODE)` with the dream's default cutoff
("auto") and the mode's default penalty ("auto"), then 10 deterministic episodes of the real env, and 10 of the dream
(their return, length and how many the cutoff ended). Zero real steps are used for training. Mode "off" is the
dream without a cutoff, for reference. Rows: stock PPO with rl-zoo's settings and with SB3's defaults, and DQN
(rl-zoo's settings) in Dream-CartPole-v0 and Dream-Acrobot-v0; SAC (rl-zoo's settings) in Dream-Pendulum-v0.
Runs already in docs/dream_training.json are skipped (the script resumes); every record is written as it finishes.
"""

from __future__ import annotations

import argparse
import json
import platform
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

from dream_envs.io import atomic_write_text
from sb3_plugins.dream_training import DREAM_TRAINING_ROWS

MODES = ("truncate", "terminate", "penalty", "off")
ROWS = DREAM_TRAINING_ROWS


def run(name: str, mode: str, seed: int) -> dict:
    from sb3_plugins import train_in_dream

    torch.set_num_threads(1)
    dream_id, algo, steps, n_envs, agent_kwargs, target = ROWS[name]
    result = train_in_dream(
        dream_id, algo, steps, seed=seed, uncertainty_threshold=None if mode == "off" else "auto",
        uncertainty_mode=None if mode == "off" else mode, algo_kwargs=agent_kwargs, n_envs=n_envs, device="cpu",
    ).as_dict()  # fmt: skip
    return {**result, "row": name, "mode": mode, "target": target}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each on one torch thread")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    path = args.out / "dream_training.json"
    done = {(r["row"], r["mode"], r["seed"]) for r in _records(path)}
    todo = [(row, mode, seed) for mode in args.modes for row in args.only for seed in args.seeds
            if (row, mode, seed) not in done]  # fmt: skip
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run, *key) for key in todo]
        for future in as_completed(futures):
            record = future.result()
            print(json.dumps(record), flush=True)
            key = (record["row"], record["mode"], record["seed"])
            records = [r for r in _records(path) if (r["row"], r["mode"], r["seed"]) != key] + [record]
            atomic_write_text(path, json.dumps(records, indent=1))
            write_markdown(records, args.out / "dream_training.md")
    write_markdown(_records(path), args.out / "dream_training.md")


def _records(path: Path) -> list[dict]:
    return [r for r in json.loads(path.read_text()) if "row" in r] if path.exists() else []


def write_markdown(records: list[dict], path: Path) -> None:
    lines = [
        "# Trained only in the dream, scored in the real env",
        "",
        "Stock SB3 agents trained on `gym.make(DREAM_ID, uncertainty_mode=MODE)` with the default cutoff",
        '(`uncertainty_threshold="auto"`) and the mode\'s default penalty, zero real steps, then 10 deterministic',
        "episodes of the real env. Reward and termination are the shipped models' LEARNED heads. Mode `off`: no cutoff",
        "(reference). Settings of every row are in `benchmarks/dream_training.py` (rl-zoo's where it has them).",
        f"Machine: 2 CPU cores, 1 torch thread per run, torch {torch.__version__}, Python {platform.python_version()}.",
        "",
        "Command: `python benchmarks/dream_training.py --jobs 2` (the slow tests in",
        "`tests/test_slow_dream_training.py` run the default mode's rows and assert the targets).",
        "",
        "## Real return per seed, by mode (target met on every seed: **bold**)",
        "",
    ]
    modes = [m for m in MODES if any(r["mode"] == m for r in records)]
    lines += ["| row | target | " + " | ".join(modes) + " |", "|---|---|" + "---|" * len(modes)]
    for row in ROWS:
        cells = []
        for mode in modes:
            runs = sorted((r for r in records if r["row"] == row and r["mode"] == mode), key=lambda r: r["seed"])
            text = ", ".join(f"{r['real_mean']:.0f}" for r in runs) or "-"
            cells.append(f"**{text}**" if runs and all(r["real_mean"] >= r["target"] for r in runs) else text)
        lines.append(f"| {row} | {ROWS[row][5]:g} | " + " | ".join(cells) + " |")
    lines += ["", "## Every run", "", "| row | mode | seed | dream steps | wall (s) | dream return | dream length "
              "| dream episodes ended by the cutoff | real return (mean +/- std) | met |",
              "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(records, key=lambda r: (list(ROWS).index(r["row"]), MODES.index(r["mode"]), r["seed"])):
        met = "yes" if r["real_mean"] >= r["target"] else "no"
        lines.append(
            f"| {r['row']} | {r['mode']} | {r['seed']} | {r['dream_steps']} | {r['train_seconds']} | "
            f"{r['dream_mean']:.1f} | {r['dream_length']:.0f} | {r['dream_cutoff_fraction']:.0%} | "
            f"{r['real_mean']:.1f} +/- {r['real_std']:.1f} | {met} |"
        )
    gaps = [r["dream_mean"] - r["real_mean"] for r in records if r["mode"] != "off"]
    if gaps:
        lines += ["", f"Dream-to-real return gap (dream minus real, all cutoff runs): median {np.median(gaps):.1f}."]
    atomic_write_text(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
