"""Train a stock SB3 agent ONLY inside a dream env, then score it in the real env.

    python examples/train_in_dream.py                       # PPO in Dream-CartPole-v0, scored on CartPole-v1
    python examples/train_in_dream.py --env Dream-Pendulum-v0 --algo sac --steps 20000
    python examples/train_in_dream.py --mode terminate          # MOReL's HALT at the uncertainty cutoff

The agent never touches the real env while it learns: every transition comes from the shipped ensemble model.
"""

import argparse

import torch

from dream_envs import DREAM_IDS
from dream_envs.envs.imagination import UNCERTAINTY_MODES
from sb3_plugins import ALGOS, train_in_dream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Dream-CartPole-v0", choices=sorted(DREAM_IDS))
    parser.add_argument("--algo", default="ppo", choices=sorted(ALGOS))
    parser.add_argument("--steps", type=int, default=100_000, help="imagined steps to train for")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", default="auto", help="uncertainty cutoff: 'auto', a number, or 'none'")
    parser.add_argument("--mode", choices=UNCERTAINTY_MODES, help="what the cutoff does (default: the dream's own)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--progress-bar", action="store_true")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    threshold = {"none": None, "auto": "auto"}.get(args.threshold)
    if threshold is None and args.threshold != "none":
        try:
            threshold = float(args.threshold)
        except ValueError:
            parser.error(f"--threshold must be 'auto', 'none' or a number, got {args.threshold!r}")
    torch.set_num_threads(1)

    result = train_in_dream(
        args.env,
        args.algo,
        args.steps,
        seed=args.seed,
        uncertainty_threshold=threshold,
        uncertainty_mode=args.mode,
        eval_episodes=args.eval_episodes,
        progress_bar=args.progress_bar,
        device="cpu",
    )
    print(
        f"{args.algo.upper()} trained on {result.dream_steps} dream steps in {args.env} "
        f"({result.train_seconds:.0f} s), 0 real steps"
    )
    print(
        f"dream return {result.dream_mean:.1f} ({result.dream_cutoff_fraction:.0%} of the dream episodes ended by the "
        f"'{result.uncertainty_mode}' cutoff) | real {result.real_id} return "
        f"{result.real_mean:.1f} +/- {result.real_std:.1f} over {result.eval_episodes} deterministic episodes"
    )


if __name__ == "__main__":
    main()
