"""Where a benchmark run's wall time goes: one `dream-envs bench` run under cProfile, its top functions printed.

    python benchmarks/profile_dyna.py                                  # CartPole-v1 ppo+dyna, seed 0
    python benchmarks/profile_dyna.py --env Pendulum-v1 --algo sac+dyna --top 50

The run is the benchmark's own (same settings, checks and stopping rule), on one torch thread and the CPU.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import torch

from sb3_plugins.benchmark.plan import plan_runs
from sb3_plugins.benchmark.runner import run_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--algo", default="ppo+dyna")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=35, help="functions to print, by cumulative time")
    parser.add_argument("--out", default="profile.out", help="the pstats file (for snakeviz and the like)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    specs = plan_runs(args.env, [args.algo], seeds=args.seed + 1, device="cpu")
    spec = next(s for s in specs if s.seed == args.seed)
    profiler = cProfile.Profile()
    record = profiler.runcall(run_one, spec)
    profiler.dump_stats(args.out)
    print(f"{args.env} {args.algo} seed {args.seed}: solved at {record['real_steps_to_threshold']} real steps, "
          f"{record['wall_seconds']:.0f} s")  # fmt: skip
    pstats.Stats(args.out).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
