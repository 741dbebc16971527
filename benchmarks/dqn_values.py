"""Do CartPole DQN's values stay within what the rewards allow, stock and + DynaCallback()?

Trains the benchmark's CartPole-v1 ``dqn`` or ``dqn+dyna`` row (rl-zoo's DQN) and every 250 real steps prints one
JSON line: the greedy policy's mean return over 5 episodes and the mean, 95th percentile and largest max-Q over the
real states in the replay buffer. With gamma 0.99 and a reward of 1 per step no return exceeds 100.

    python benchmarks/dqn_values.py --algo dqn --seed 3                        # stock DQN
    python benchmarks/dqn_values.py --algo dqn+dyna --seed 3                   # DynaCallback(): value_bound on
    python benchmarks/dqn_values.py --algo dqn+dyna --seed 3 --no-value-bound  # DynaCallback(value_bound=False)
"""

from __future__ import annotations

import json

import gymnasium as gym
import torch
from probe_run import probe_parser, train_with_probe
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy

ENV_ID = "CartPole-v1"


class _Probe(BaseCallback):
    def __init__(self, every: int):
        super().__init__()
        self.every, self.eval_env = every, gym.make(ENV_ID)

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every:
            return True
        buffer = getattr(self.model.replay_buffer, "real", self.model.replay_buffer)
        stored = buffer.buffer_size if buffer.full else buffer.pos
        with torch.no_grad():
            best = self.model.q_net(torch.as_tensor(buffer.observations[:stored, 0]).float()).max(dim=1).values
        score, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=5, deterministic=True, warn=False)
        print(json.dumps({
            "real_steps": self.num_timesteps, "return": round(score, 1), "max_q_mean": round(best.mean().item(), 1),
            "max_q_p95": round(best.quantile(0.95).item(), 1), "max_q_max": round(best.max().item(), 1),
        }), flush=True)  # fmt: skip
        return True


def main() -> None:
    parser = probe_parser(__doc__, seed=3)
    parser.add_argument("--algo", choices=["dqn", "dqn+dyna"], default="dqn+dyna")
    parser.add_argument("--no-value-bound", action="store_true", help="DynaCallback(value_bound=False)")
    args = parser.parse_args()
    overrides = {ENV_ID: {"dqn+dyna": {"dyna": {"value_bound": not args.no_value_bound}}}}
    train_with_probe(ENV_ID, args.algo, args, overrides, lambda dyna: _Probe(args.every))


if __name__ == "__main__":
    main()
