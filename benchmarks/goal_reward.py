"""Why MountainCarContinuous sac+dyna can stay stuck: does the learned reward hold the goal's +100?

Trains the benchmark's MountainCarContinuous-v0 ``sac+dyna`` row (rl-zoo's SAC + ``DynaCallback()``) and every 250
real steps prints one JSON line: the deterministic policy's return (1 episode), how many real transitions reached
the goal (reward > 50) and the largest real x, the largest reward and x in the imagined replay and the share of
imagined rewards > 50, the policy's action and its value (min of the twin critics) at four states, and the trust.

    python benchmarks/goal_reward.py --seed 2 --steps 3000            # learned reward and termination (default)
    python benchmarks/goal_reward.py --seed 2 --steps 3000 --known    # gymnasium's own reward and termination
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import torch
from probe_run import probe_parser, train_with_probe
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy

ENV_ID = "MountainCarContinuous-v0"
# the valley at rest, the left slope at rest, climbing the left of the valley, near the goal at speed
STATES = torch.tensor([[-0.5, 0.0], [-0.9, 0.0], [-0.2, 0.03], [0.3, 0.02]], dtype=torch.float32)


class _Probe(BaseCallback):
    def __init__(self, dyna, every: int):
        super().__init__()
        self.dyna, self.every, self.eval_env = dyna, every, gym.make(ENV_ID)

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every:
            return True
        real = self.dyna.real.transitions()
        imagined = self.dyna._imagined
        n = len(imagined)
        rewards = imagined.rewards[:n].cpu().numpy().ravel() if n else np.zeros(1)
        xs = imagined.next_obs[:n, 0].cpu().numpy() if n else np.full(1, np.nan)
        with torch.no_grad():
            actions = self.model.actor(STATES, deterministic=True)
            values = torch.min(*self.model.critic(STATES, actions))
        score, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=1, deterministic=True, warn=False)
        print(json.dumps({
            "real_steps": self.num_timesteps, "return": round(score, 1), "real_goal": int((real.reward > 50).sum()),
            "real_x_max": round(float(real.obs[:, 0].max()), 3), "imagined": n,
            "imagined_reward_max": round(float(rewards.max()), 1),
            "imagined_goal_share": round(float((rewards > 50).mean()), 4),
            "imagined_x_max": round(float(np.nanmax(xs)), 3),
            "actions": [round(float(a), 2) for a in actions.ravel()],
            "values": [round(float(v), 1) for v in values.ravel()], "trust": round(self.dyna.trust, 3),
        }), flush=True)  # fmt: skip
        return True


def main() -> None:
    parser = probe_parser(__doc__, seed=2)
    parser.add_argument("--known", action="store_true", help="gymnasium's reward and termination, not learned ones")
    args = parser.parse_args()
    dyna_settings = {"reward_fn": "known", "termination_fn": "known"} if args.known else {}
    overrides = {ENV_ID: {"sac+dyna": {"dyna": dyna_settings}}}
    train_with_probe(ENV_ID, "sac+dyna", args, overrides, lambda dyna: _Probe(dyna, args.every))


if __name__ == "__main__":
    main()
