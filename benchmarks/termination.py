"""The learned termination head: what it reads (the next observation, or the current observation and action) and
how it decides (balanced, half-adjusted or fully adjusted logits).

    python benchmarks/termination.py            # writes docs/termination.md and docs/termination.json (~15 min)

What it reads: for CartPole-v1, InvertedPendulum-v5, InvertedDoublePendulum-v5, Hopper-v5 and Walker2d-v5, a model of
DynaCallback's default size (5 members, 4 elites, 3 x 200) fitted with the default fit schedule on 250, 500 and
1,500 random-action steps, once with each head: ``"next_obs"`` (a classifier of the next observation, judging the
model's own predicted mean next observation) and ``"obs_action"`` (a column of the dynamics trunk). Recall, precision
and F1 of the elites' mean decision on 5,000 fresh random-action transitions, and the fit's seconds.

How it decides: the head is trained with class-balanced weights (terminal rows weighted up to 50x), which shifts its
logit by log(w_terminal / w_other). Read as it is ("balanced"), the head flags doubtful rows as terminal; with the
whole shift removed ("adjusted", the decision at probability 1/2) it misses terminations; the model removes half of
it ("half", what `EnsembleDynamics` does). For CartPole-v1 models (default architecture and head) fitted on 500, 3,000
and 20,000 random-action steps for 3, 20 and 100 epochs: recall, precision and the false-termination rate of each
decision on 5,000 fresh real transitions. Pendulum has no terminal transition at all: there the head is never used
(tests/test_uncertainty.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import torch

from dream_envs import EnsembleDynamics, TransitionBuffer
from dream_envs.io import atomic_write_text

DECISIONS = ("balanced", "half (ships)", "adjusted")
INPUT_ENVS = ("CartPole-v1", "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Hopper-v5", "Walker2d-v5")
INPUT_STEPS = (250, 500, 1500)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / max(precision + recall, 1e-12)


def _scores(predicted, true) -> dict[str, float]:
    """Recall, precision and F1 of boolean decisions ``predicted`` against the real ``true`` flags."""
    hits = float((predicted & true).sum())
    recall, precision = hits / max(float(true.sum()), 1.0), hits / max(float(predicted.sum()), 1.0)
    return {"recall": recall, "precision": precision, "f1": _f1(precision, recall)}


def measure_inputs() -> list[dict]:
    records = []
    for env_id in INPUT_ENVS:
        env = gym.make(env_id)
        test = TransitionBuffer.from_env(env).collect(env, 5000, seed=1).transitions()
        for n in INPUT_STEPS:
            buffer = TransitionBuffer.from_env(env).collect(env, n, seed=0)
            terminal_rows = int(buffer.transitions().terminated.sum())
            for head in ("next_obs", "obs_action"):
                model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=5, num_elites=4,
                                         termination_input=head, device="cpu", seed=0)  # fmt: skip
                started = time.perf_counter()
                model.fit(buffer, seed=0)
                seconds = time.perf_counter() - started
                logit = model.predict(test.obs, test.action).termination_logit[model.elite_idx].mean(0).numpy()
                records.append({"env": env_id, "real_steps": n, "terminal_rows": terminal_rows, "head": head,
                                **_scores(logit > 0, test.terminated), "fit_seconds": seconds})  # fmt: skip
    return records


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
                    "real_steps": n, "epochs": epochs, "decision": name, **_scores(predicted, true),
                    "false_termination_rate": float((predicted & ~true).sum() / max((~true).sum(), 1)),
                })  # fmt: skip
    return records


def write_markdown(inputs: list[dict], records: list[dict], path: Path) -> None:
    lines = [
        "# The learned termination head: what it reads and how it decides",
        "",
        f"Made by `python benchmarks/termination.py` (2-core CPU, torch {torch.__version__}, Python "
        f"{platform.python_version()}); what it measures is in the script's docstring. F1 is the harmonic mean of",
        "precision and recall.",
        "",
        "## What it reads: the current observation and action (ships) or the next observation",
        "",
        "| env | random steps | terminal rows | head | recall | precision | F1 | fit seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in inputs:
        lines.append(f"| {r['env']} | {r['real_steps']:,} | {r['terminal_rows']} | {r['head']} | {r['recall']:.2f} | "
                     f"{r['precision']:.2f} | {r['f1']:.2f} | {r['fit_seconds']:.1f} |")  # fmt: skip
    lines += [
        "",
        "## How it decides (CartPole-v1, the default head: the trunk's column)",
        "",
        "| real steps | epochs | decision | recall | precision | F1 | false terminations (of non-terminal rows) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        f1 = _f1(r["precision"], r["recall"])  # records made before the "f1" key hold only precision and recall
        lines.append(f"| {r['real_steps']:,} | {r['epochs']} | {r['decision']} | {r['recall']:.2f} | "
                     f"{r['precision']:.2f} | {f1:.2f} | {r['false_termination_rate']:.1%} |")  # fmt: skip
    atomic_write_text(path, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    inputs = measure_inputs()
    records = measure()
    atomic_write_text(args.out / "termination.json", json.dumps({"inputs": inputs, "decisions": records}, indent=1))
    write_markdown(inputs, records, args.out / "termination.md")


if __name__ == "__main__":
    main()
