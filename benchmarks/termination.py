"""How the learned termination head decides: balanced, half-adjusted (what ships) or fully adjusted logits.

    python benchmarks/termination.py            # writes docs/termination.md and docs/termination.json (~2 min)

The head is trained with class-balanced weights (terminal rows weighted up to 50x), which shifts its logit by
log(w_terminal / w_other). Read as it is ("balanced"), the head flags doubtful rows as terminal; with the whole shift
removed ("adjusted", the decision at probability 1/2) it misses terminations; the model removes half of it
("half", what `EnsembleDynamics` does). For CartPole-v1 models (default architecture) fitted on 500, 3,000 and
20,000 random-action steps for 3, 20 and 100 epochs: recall, precision and the false-termination rate of each
decision on 5,000 fresh real transitions. Pendulum has no terminal transition at all: there the head is never
used (tests/test_uncertainty.py).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import gymnasium as gym
import torch

from dream_envs import EnsembleDynamics, TransitionBuffer
from dream_envs.io import atomic_write_text

DECISIONS = ("balanced", "half (ships)", "adjusted")


def measure() -> list[dict]:
    env = gym.make("CartPole-v1")
    test = TransitionBuffer.from_env(env).collect(env, 5000, seed=1).transitions()
    records = []
    for n in (500, 3000, 20000):
        buffer = TransitionBuffer.from_env(env).collect(env, n, seed=0)
        for epochs in (3, 20, 100):
            model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=5, num_elites=4,
                                     device="cpu", seed=0)  # fmt: skip
            model.fit(buffer, max_epochs=epochs, seed=0)
            with torch.no_grad():  # the decision's own scale: > 0 is terminal for the half-adjusted head
                logit = model.predict(test.obs, test.action).termination_logit[model.elite_idx].mean(0).numpy()
            half = float(model.termination_logit_offset)  # half of the balancing shift
            for name, shift in zip(DECISIONS, (half, 0.0, -half)):
                predicted = logit + shift > 0
                true = test.terminated
                records.append({
                    "real_steps": n, "epochs": epochs, "decision": name,
                    "recall": float((predicted & true).sum() / max(true.sum(), 1)),
                    "precision": float((predicted & true).sum() / max(predicted.sum(), 1)),
                    "false_termination_rate": float((predicted & ~true).sum() / max((~true).sum(), 1)),
                })  # fmt: skip
    return records


def write_markdown(records: list[dict], path: Path) -> None:
    lines = [
        "# The learned termination head's decision",
        "",
        f"Made by `python benchmarks/termination.py` (2-core CPU, torch {torch.__version__}, Python "
        f"{platform.python_version()}); what it measures is in the script's docstring. F1 is the harmonic mean of",
        "precision and recall.",
        "",
        "| real steps | epochs | decision | recall | precision | F1 | false terminations (of non-terminal rows) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        f1 = 2 * r["precision"] * r["recall"] / max(r["precision"] + r["recall"], 1e-12)
        lines.append(f"| {r['real_steps']:,} | {r['epochs']} | {r['decision']} | {r['recall']:.2f} | "
                     f"{r['precision']:.2f} | {f1:.2f} | {r['false_termination_rate']:.1%} |")  # fmt: skip
    atomic_write_text(path, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = measure()
    atomic_write_text(args.out / "termination.json", json.dumps(records, indent=1))
    write_markdown(records, args.out / "termination.md")


if __name__ == "__main__":
    main()
