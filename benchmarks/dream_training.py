"""Stock SB3 agents trained ONLY in the shipped dream envs, scored on the real envs (docs/dream_training.md).

    python benchmarks/dream_training.py                     # all rows below, seeds 0 1 2
    python benchmarks/dream_training.py --only Dream-CartPole-v0 --seeds 0

Each run: `train_in_dream(dream_id, algo, steps, seed)` with SB3 defaults, then 10 deterministic episodes of
the real env. Zero real steps are used for training; the dream steps and wall time are reported.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from dream_envs.io import atomic_write_text
from sb3_plugins import train_in_dream

# dream id -> (algo, dream steps, real-env target)
ROWS = {
    "Dream-CartPole-v0": ("ppo", 100_000, 475.0),
    "Dream-Pendulum-v0": ("sac", 20_000, -250.0),
    "Dream-Acrobot-v0": ("ppo", 100_000, -100.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results_path = args.out / "dream_training.json"
    for dream_id in args.only:
        algo, steps, target = ROWS[dream_id]
        for seed in args.seeds:
            result = train_in_dream(dream_id, algo, steps, seed=seed, device="cpu").as_dict()
            result["target"] = target
            print(json.dumps(result), flush=True)
            # Re-read just before writing, so runs of this script side by side (--only) keep each other's rows.
            records = json.loads(results_path.read_text()) if results_path.exists() else []
            records = [r for r in records if (r["dream_id"], r["seed"]) != (dream_id, seed)] + [result]
            atomic_write_text(results_path, json.dumps(records, indent=1))
    write_markdown(json.loads(results_path.read_text()), args.out / "dream_training.md")


def write_markdown(records: list[dict], path: Path) -> None:
    lines = [
        "# Trained only in the dream, scored in the real env",
        "",
        "Stock SB3 agents (`MlpPolicy`, default hyperparameters) trained on `gym.make(DREAM_ID,",
        'uncertainty_threshold="auto")` with zero real steps, then 10 deterministic episodes of the real env.',
        "Reward and termination are the model's LEARNED heads (no known functions given).",
        f"Machine: 2 CPU cores, 1 torch thread, torch {torch.__version__}, Python {platform.python_version()}.",
        "",
        "Command: `python benchmarks/dream_training.py` (the slow tests in `tests/test_slow_dream_training.py`",
        "run the same function and assert the targets).",
        "",
        "| dream env | algo | seed | dream steps | train wall (s) | dream return | real return (mean +/- std) "
        "| target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (r["dream_id"], r["seed"])):
        met = "yes" if r["real_mean"] >= r["target"] else "no"
        lines.append(
            f"| {r['dream_id']} | {r['algo']} | {r['seed']} | {r['dream_steps']} | {r['train_seconds']} | "
            f"{r['dream_mean']:.1f} | {r['real_mean']:.1f} +/- {r['real_std']:.1f} | >= {r['target']} | {met} |"
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
