"""Neural Dyna on CartPole-v1: stock DQN + DynaCallback, beside plain DQN, counted in REAL steps to solve.

    python examples/neural_dyna.py                  # seed 0, both agents, up to 5,000 / 30,000 real steps
    python examples/neural_dyna.py --seed 3 --budget 3000

The neural Dyna agent of the textbook (a Q-network trained on real transitions plus imagined rollouts from a
learned model, cut where the ensemble disagrees) is exactly DQN + DynaCallback: the callback refits the ensemble
every `model_train_freq` real steps, branches batched imagined rollouts from real states with the current
Q-network, and DQN trains on real_ratio-mixed batches. The settings are the benchmark's (`dream-envs bench`):
rl-zoo's DQN for both agents, and `DynaCallback()` with no arguments for the +dyna one.
"""

import argparse
from dataclasses import replace

import torch

from sb3_plugins.benchmark import hyperparams_for, plan_runs, run_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, help="real steps per agent (default: 5,000 with Dyna, 30,000 without)")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-episodes", type=int, default=10)
    args = parser.parse_args()
    if args.budget is not None and args.budget < args.eval_every:
        parser.error(f"--budget must be at least --eval-every ({args.eval_every}), got {args.budget}")
    torch.set_num_threads(1)
    print("DQN + DynaCallback settings:", hyperparams_for("CartPole-v1", "dqn+dyna"))
    for spec in plan_runs("CartPole-v1", ["dqn+dyna", "dqn"], seeds=1, budget=args.budget, eval_every=args.eval_every,
                          eval_episodes=args.eval_episodes, device="cpu"):  # fmt: skip
        record = run_one(replace(spec, seed=args.seed))
        hit = record["real_steps_to_threshold"]
        outcome = f"solved at {hit:,} real steps" if hit else f"not solved in {record['budget']:,} real steps"
        print(
            f"{spec.algo:>9}: {outcome}; last check {record['final_return']:.1f}; "
            f"{record['imagined_steps']:,} imagined steps; {record['wall_seconds']:.0f} s"
        )


if __name__ == "__main__":
    main()
