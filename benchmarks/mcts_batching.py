"""docs/mcts_batching.md: what batching MuZero's searches buys, measured side by side in one process.

    python benchmarks/mcts_batching.py

One search of 25 simulations over a fresh MuZero network for CartPole-v1, for 1, 8 and 64 trees at once
(BatchedMCTS steps all trees' networks together), on 1 torch thread. The figure is the throughput ratio against
searching the same trees one at a time: ``trees * t(1 tree) / t(trees)``.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dream_envs.agents import MuZero
from dream_envs.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
TREES = (1, 8, 64)


def seconds_per_search(agent: MuZero, observations: np.ndarray, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        agent.search.search(agent.search_model, observations, add_noise=True)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    torch.set_num_threads(1)
    agent = MuZero("CartPole-v1", n_envs=1, num_simulations=25, seed=0, device="cpu")
    start = np.random.default_rng(0).uniform(-0.05, 0.05, (max(TREES), 4)).astype(np.float32)
    seconds_per_search(agent, start[:8], 5)  # warm-up
    rounds = [{n: seconds_per_search(agent, start[:n], 40 if n < 64 else 10) for n in TREES} for _ in range(3)]
    best = {n: min(r[n] for r in rounds) for n in TREES}
    rows = [{"trees": n, "ms_per_search": round(best[n] * 1e3, 2), "ms_per_tree": round(best[n] / n * 1e3, 3),
             "speedup_vs_one_at_a_time": round(n * best[1] / best[n], 1)} for n in TREES]  # fmt: skip
    record = {"num_simulations": 25, "rows": rows, "torch_threads": 1, "torch": torch.__version__,
              "python": platform.python_version(), "command": "python benchmarks/mcts_batching.py"}  # fmt: skip
    atomic_write_text(ROOT / "docs" / "mcts_batching.json", json.dumps(record, indent=2) + "\n")
    lines = ["# MuZero's batched MCTS: trees searched together", "",
             "`python benchmarks/mcts_batching.py`: one 25-simulation search with a fresh MuZero network for "
             "CartPole-v1, on 1 torch thread of the project's 2-core CPU machine (best of 3 rounds, ratios taken "
             "in the same process).", "",
             "| trees | ms per search | ms per tree | throughput vs one tree at a time |", "|---|---|---|---|",
             *(f"| {r['trees']} | {r['ms_per_search']} | {r['ms_per_tree']} | {r['speedup_vs_one_at_a_time']}x |"
               for r in rows), "",
             "Self-play searches its 8 envs as one batch, and the benchmark's checks play their 10 episodes as one "
             "batch, so each pays about one tree's Python and network-call overhead per simulation."]  # fmt: skip
    atomic_write_text(ROOT / "docs" / "mcts_batching.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
