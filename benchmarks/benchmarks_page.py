"""docs/benchmarks.md: stock SB3 agents vs the same agents + DynaCallback, every figure made by `dream-envs bench`.

    python benchmarks/benchmarks_page.py             # run COMMANDS (finished runs are skipped), then write the page
    python benchmarks/benchmarks_page.py --page-only # re-write the page from docs/benchmarks/results.jsonl

The protocol is the yardstick's (../shared/yardstick): 10 deterministic episodes of a fresh real env every 250 real
steps (200 on Pendulum); a run's figures are the real-step counts of its first passing check and of the first passing
check that the next 2 confirm ("solved and stays solved"); 5 seeds; the stock agent runs with rl-zoo's
hyperparameters in the same grid. The page adds the targets of the DynaCallback and MPCAgent issue (14) and of
MuZero (first pass).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from dream_envs.io import atomic_write_text
from sb3_plugins.benchmark import ResultsDir, summarize
from sb3_plugins.benchmark.report import format_steps
from sb3_plugins.cli import main as dream_envs

ROOT = Path(__file__).resolve().parents[1]
OUT = "docs/benchmarks"
COMMANDS = [
    ["bench", "--env", "CartPole-v1", "--algos", "ppo", "ppo+dyna", "dqn", "dqn+dyna", "--seeds", "5", "--out", OUT],
    ["bench", "--env", "Acrobot-v1", "--algos", "ppo", "ppo+dyna", "--seeds", "5", "--out", OUT],
    ["bench", "--env", "Pendulum-v1", "--algos", "sac", "sac+dyna", "--seeds", "5", "--out", OUT],
    # gymnasium's MuJoCo (pip install ".[mujoco]")
    ["bench", "--env", "InvertedPendulum-v5", "--algos", "sac", "sac+dyna", "--seeds", "5", "--out", OUT],
    ["bench", "--env", "MountainCarContinuous-v0", "--algos", "sac", "sac+dyna", "--seeds", "5", "--out", OUT],
    # a +dyna run takes 10-25 minutes on one core
    ["bench", "--env", "InvertedDoublePendulum-v5", "--algos", "sac", "sac+dyna", "--seeds", "5", "--out", OUT],
    # Reacher and HalfCheetah compare returns at a number of real steps: full curves (--keep-training)
    [
        "bench",
        "--env",
        "Reacher-v5",
        "--algos",
        "sac+dyna",
        "--seeds",
        "5",
        "--budget",
        "5000",
        "--keep-training",
        "--out",
        OUT,
    ],
    ["bench", "--env", "Reacher-v5", "--algos", "sac", "--seeds", "5", "--keep-training", "--out", OUT],
    # HalfCheetah: sac+dyna takes 1.5-2 hours per seed on one core; a stopped run goes on from its checkpoint
    ["bench", "--env", "HalfCheetah-v5", "--algos", "sac", "sac+dyna", "--seeds", "3", "--keep-training", "--out", OUT],
    # dream-envs' own agents, 3 seeds as their issue asks, in the same results as the stock agents above.
    ["bench", "--env", "CartPole-v1", "--algos", "muzero", "world-models", "--seeds", "3", "--out", OUT],
    # MPCAgent(env) with no arguments (issue 14's mpc rows), checked after each refit (every 200 real steps);
    # InvertedPendulum: seed 0 ran (close to 2 hours on a shared core)
    ["bench", "--env", "CartPole-v1", "--algos", "mpc", "--seeds", "5", "--out", OUT],
    ["bench", "--env", "Pendulum-v1", "--algos", "mpc", "--seeds", "5", "--out", OUT],
    ["bench", "--env", "InvertedPendulum-v5", "--algos", "mpc", "--seeds", "5", "--out", OUT],
]
# The issues' targets: the metric ("stay_": solved and stays solved; "": first pass), median real steps, and the
# worst seed where it sets one. Issue 14's are DynaCallback() with no arguments on the stock rows.
TARGETS = {
    ("CartPole-v1", "ppo+dyna"): ("stay_", 500, 1000),
    ("CartPole-v1", "dqn+dyna"): ("stay_", 1500, None),
    ("Acrobot-v1", "ppo+dyna"): ("stay_", 1000, None),
    ("Pendulum-v1", "sac+dyna"): ("stay_", 600, None),
    ("InvertedPendulum-v5", "sac+dyna"): ("stay_", 1500, None),
    ("MountainCarContinuous-v0", "sac+dyna"): ("stay_", 3000, None),
    ("InvertedDoublePendulum-v5", "sac+dyna"): ("stay_", 6000, None),
    # and MPCAgent(env) with no arguments
    ("CartPole-v1", "mpc"): ("stay_", 400, None),
    ("Pendulum-v1", "mpc"): ("stay_", 400, None),
    ("InvertedPendulum-v5", "mpc"): ("stay_", 1000, None),
    # MuZero's issue: >= 475 within 20,000 real steps, every seed.
    ("CartPole-v1", "muzero"): ("", 20_000, 20_000),
}
# Issue 14's return targets, from the curves (median over seeds): "reach", the +dyna row's first check at or above
# `factor` x the stock row's return at `stock_steps`, within `steps` real steps; "at", its return at `steps` against
# that bar.
RETURN_TARGETS = {
    ("Reacher-v5", "sac+dyna"): ("reach", 5_000, "sac", 20_000, 1.0),
    ("HalfCheetah-v5", "sac+dyna"): ("at", 30_000, "sac", 30_000, 1.5),
}
NOTES = """\
## Notes

- Hyperparameters of every run are in its record in `docs/benchmarks/results.jsonl`; the defaults live in
  `sb3_plugins/benchmark/hyperparams.py`. Stock agents use rl-zoo's settings with linear schedules replaced by their
  start values; Acrobot runs without rl-zoo's VecNormalize (the checks play raw observations, and DynaCallback
  learns from raw ones).
- A `+dyna` variant is the stock row plus `DynaCallback()` with no arguments (issue 14 removed the per-env `_DYNA`
  table): its model fit is sized in gradient steps from the data (`dream_envs.models.fit_schedule`), it refits as
  the data grow by half (at 64, 96, 144, 216, 324, 486 and 729 real steps; `refit_growth`), then every 250, whatever
  the agent's rollout length, trains an off-policy agent on the dream before its `learning_starts`, and scales the
  dream's share by its trust in the model (`sb3_plugins.model_trust`). Off-policy rows use DynaCallback's default
  `real_ratio` of 0.5 (half of every batch real).
- Reward and termination of every `+dyna` run are LEARNED by the model; no known function is given.
- Refits as the data grow (`refit_growth`, commit 64b3441 and the branch sharing after it; records of the fixed period
  in `docs/benchmarks/experiments/fixed_refit_period/`): the first fit at 64 real steps instead of 250, then one each
  time the data have grown by half, until they are 250 apart, with the same imagined data per real step (dream rounds
  and MBPO branches per 250 real steps, shared out over the early refits). Stays solved, seeds 0-4, fixed period ->
  data-paced (one run at a time, two to three runs on the 2 cores): CartPole ppo+dyna 752, 752, 752, 1,000, 752 ->
  256, 256, 256, 1,000, 504 (median 752 -> 256: issue 14's <= 500 and worst <= 1,000 met); Acrobot ppo+dyna 256 on
  every seed -> the same; Pendulum sac+dyna 800, 600, 800, 1,000, 1,600 -> 600, 800, 400, 800, 1,400 (median 800 both,
  worst 1,600 -> 1,400); InvertedPendulum sac+dyna 2,500, 2,000, 2,000, 2,500, 2,000 -> 1,500, 1,500, 2,000, 2,000,
  3,000 (median 2,000 both; seed 4 passed first at 1,500 and fell back); CartPole dqn+dyna stays solved on 1 seed of 5
  both ways (seed 3 at 2,000 -> seed 0 at 3,250; first passes 250, none, 500, 2,000, none -> 500, 4,750, 2,250, none,
  4,500). A first version started the full 400 MBPO branches at every early refit (more imagined data from models
  fitted on a few dozen steps; records in `docs/benchmarks/experiments/refit_growth_more_branches/`): CartPole
  dqn+dyna stayed solved on no seed (one run collapsed to returns of 9), Pendulum 1,000, 600, 600, 800, 1,400,
  MountainCarContinuous seeds 0-2 at 5,000, 6,000 and 2,000 (shared out, seed 0: 2,000;
  `docs/benchmarks/experiments/mcc_rerun/`); sharing the branches out is what shipped. Wall vs stock and worst check
  vs stock on the rerun rows (tables above; the reruns shared the 2 cores with two other runs): CartPole ppo+dyna 3.5x
  (3.1x before), +0.82; Pendulum 1.8x (2.0x-3.5x before), +0.25 at 200 real steps (-0.20 before: the first fit now
  comes before the first check); InvertedPendulum 1.8x (3.3x before), +0.00; CartPole dqn+dyna 6.6x (6.4x), -0.54
  (-0.49). Side by side on commit 1d4df59, stock SAC on MountainCarContinuous replays its records exactly (18,000,
  13,000, 14,000, 13,000, 9,000), while SAC + `DynaCallback()` (fixed period) stays solved at 3,000 on seed 0 (the
  record: 2,000), so that row's +dyna records did not replay on today's code. Its rerun with refit_growth (commit
  91aac94, one run at a time, two to three runs on the 2 cores; the fixed period's records, made before issue 15's
  seeding, in `docs/benchmarks/experiments/fixed_refit_period/`): stays solved at 2,000, 6,000, none within 10,000,
  4,000 and 3,000 (records 2,000, 3,000, 4,000, 3,000, 4,000): median 4,000, issue 14's <= 3,000 MISSED, 5.9x the
  stock wall time, worst check -0.69 (at 2,000). Seed 2's checks sit at -93 from 2,000 to 10,000: a policy that
  pushes all the time and never reaches the goal, the failure of the termination-head experiment below (both
  heads); the learned reward cannot hold the goal's +100 before a real run reaches it, and stock SAC's gSDE finds it
  on every seed. InvertedDoublePendulum sac+dyna, rerun the same way: stays solved at 4,000, 5,000, 3,000, 2,000 and
  8,000 (records 4,000, 3,000, 3,000, 6,000, 2,000; seed 4 passed first at 2,000 and dipped to 8,450 at 3,000,
  4,000 and 7,000): median 4,000, issue 14's <= 6,000 met; 5.1x the stock wall time (3.3x before), worst check
  +0.04. Reacher sac+dyna, rerun the same way (`--env Reacher-v5 --algos sac+dyna --seeds 5 --budget 5000
  --keep-training`; the fixed period's records moved the same way): -8.96, -6.40, -5.74, -5.30, -4.76; -8.14,
  -10.19, -8.42, -7.17, -6.85; -7.44, -6.67, -6.20, -5.00, -4.56; -10.07, -6.91, -5.99, -5.71, -4.61; -8.55, -8.24,
  -6.77, -8.03, -6.55 at 1,000-5,000 real steps (seeds 0-4; records: 5,000's -4.34, -5.66, -4.94, -4.90, -6.27):
  median at 5,000 -4.76 against the stock bar of -5.02, met as before; 2.9x the stock wall time, worst check +0.07.
  HalfCheetah (about 1.5 hours a seed on one core) is still the fixed period's records in the table: its rerun
  writes into `docs/benchmarks/pending/HalfCheetah-v5/` (`dream-envs bench --env HalfCheetah-v5 --algos sac+dyna
  --seeds 3 --keep-training --out docs/benchmarks/pending/HalfCheetah-v5 --n-jobs 1 --device cpu`; finished
  records are committed as they come and skipped when the same command resumes). Seed 0 (started on commit
  eae20ee, resumed from its 10,000-step checkpoint on 3db683f, the other core busy): -295, 940, 2,273, 2,952, 4,472
  and 4,654 at 5,000-30,000 real steps in 5,940 s (the fixed period's seed 0: -259, 540, 2,052, 2,868, 4,085 and
  4,627 in 6,062 s); 4.4x the bar of 1,047 (1.5x the stock median). Seed 1 (resumed from its 15,000-step
  checkpoint): -205, 528, 2,192, 3,553, 3,483 and 4,453 in 6,653 s (the fixed period's seed 1: 4,567). Whatever seed 2
  scores, the median of the 3 at 30,000 is at least 4,453, 4.3x the bar: the target holds with today's defaults.
  Seed 2 was started on commit de20a53 (the same command resumes it); the table keeps the fixed period's 3 seeds
  until it is in.
- The value bound (`DynaCallback(value_bound=True)`, the default since this record; `sb3_plugins.value_bound`). The
  DQN extra gradient steps buy Bellman backups (a target sync after each 128), and with them CartPole DQN's values
  ran away: `python benchmarks/dqn_values.py --seed 3` (mean max-Q over the real states in the replay buffer at
  3,000 real steps; no CartPole return exceeds 100 at gamma 0.99): stock DQN 7.6, DQN + `DynaCallback()` without
  the bound (`--no-value-bound`) 1,473 (p95 2,804), with Double-DQN targets in the extra steps instead 265, with the
  bound 94.6. The bound clips the target network's values, during the callback's extra steps only, to
  `[min(0, r_min), max(0, r_max)] / (1 - gamma)` over the real rewards seen, the range of every discounted return,
  so it never moves a correct target. Stays solved, seeds 0-4, without -> with the bound (one run at a time beside
  two other runs; records without it in `docs/benchmarks/experiments/no_value_bound/`): first passes 500, 4,750,
  2,250, none, 4,500 -> 500, 1,000, 3,500, 2,000, 1,500 (median 4,500 -> 1,500), stays solved on seed 0 at 3,250 ->
  on no seed within 5,000 (its checks still swing between 40 and 500), median final return 100 -> 155, worst
  check -0.54 -> -0.24 (at 2,000, where stock DQN's median peaks at 308 before it falls back to 100-200), wall 6.6x
  -> 6.3x. Issue 14's <= 1,500 stays solved is still MISSED: the values are bounded now, but the greedy policy
  flips with action gaps smaller than the fit's noise. With `utd_ratio` 5 instead of 10 (without the bound;
  `--hyperparams docs/benchmarks/experiments/utd_ratio_5/utd5.yaml`, records there) CartPole dqn+dyna passes first
  at 2,000, 1,000 and 4,250 on 3 seeds of 5 and stays solved on none, and Pendulum sac+dyna stays
  solved at 1,400, 1,600, 1,400, 1,000 and 2,400 (median 1,400 against 800 at 10) in about the same wall time
  (184-276 s a run against 131-456 s): halving the gradient steps doubles the real steps, so 10 stays.
  Outside the table, Acrobot-v1 with rl-zoo's DQN (learning_starts 0, 4 gradient steps per 4 real steps, a target
  sync every 250, exploration over 12,000), seed 0, checks every 500 real steps to 5,000 (`dream-envs bench --env
  Acrobot-v1 --algos dqn dqn+dyna --seeds 1 --budget 5000 --eval-every 500 --keep-training`, and `--hyperparams
  docs/benchmarks/experiments/no_value_bound/no_bound.yaml` without the bound; records in
  `docs/benchmarks/experiments/outside_the_table/acrobot_dqn_*.jsonl`): stock DQN -500 at every check but one
  (-441); + `DynaCallback()` -209, -125, -466, -125, -98, -380, -94, -94, -98, -85 (378 s); without the bound -494,
  -500, -176, -180, -467, -420, -500, -273, -88, -500 (409 s).
- Why MountainCarContinuous sac+dyna seed 2 stays at -93 (`python benchmarks/goal_reward.py --seed 2`): by 1,250
  real steps its training episodes (gSDE noise on) have reached the goal twice and 7 times by 3,000, but the learned
  reward never predicts more than 17 for the goal's +100 (7 rows in 3,000, all terminal) and the imagined branches
  run past x = 0.45 to 0.6 without ending; the greedy
  policy pushes at +0.96 from every state (valley at rest included) and never rocks. With gymnasium's own reward and
  termination (`--known`) the same seed returns 93 and 92 at 2,750 and 3,000. So the root is the learned reward of
  a rare, large event (a sparse goal bonus), which the trust rule does not see: it judges the learned reward on
  non-terminal rows only (so that Acrobot's 0 on its last step, against -1 elsewhere, does not condemn a model that
  is right wherever the episode goes on), and MountainCarContinuous's +100 comes only on terminal rows.
- Rewards of their kind (`EnsembleDynamics`, commit 7e0f7f7; records before it in
  `docs/benchmarks/experiments/one_reward_range/`): an imagined step's reward stays within the real rewards of its
  kind, terminal or not (a step the termination head ends pays what real terminal steps paid, another what real
  steps that went on paid), where before it stayed within all real rewards. On 1,000 MountainCarContinuous steps
  with 3 goal rows the NLL fit explains the rare +99.9 away with variance (about 1 predicted there); now the goal
  pays 99.9 wherever the head ends the step and a step that goes on at most 0 (tests/test_ensemble.py). Acrobot's
  and InvertedPendulum's rewards become exact where the head is right (0 on the terminal step against -1 and 1
  elsewhere), InvertedDoublePendulum's terminal step pays within its real -1.6 to -1.0 (8.7 to 9.4 elsewhere, 3,000
  random steps); CartPole (1 on every step) and the envs that never terminate (Pendulum, Reacher, HalfCheetah) step
  exactly as before. Against the real rewards (`python benchmarks/reward_kinds.py`, `docs/reward_kinds.md`: models
  of the default size fitted on 250 and 1,500 random-action steps, 5,000 fresh ones), mean absolute reward error,
  all real rewards -> its kind: InvertedDoublePendulum 0.73 -> 0.37 and 1.10 -> 0.20, InvertedPendulum 0.11 -> 0.03
  and 0.15 -> 0.01, Hopper 0.100 -> 0.102 and 0.054 both, Walker2d 0.148 and 0.085 both, CartPole 0. The NLL fit
  does not learn InvertedDoublePendulum's terminal reward (it predicts about 8 where the real step pays -1.6 to
  -1.0); the clip moves that error onto the termination head's mistakes: on the 1.4 to 3.2% of
  InvertedDoublePendulum's and InvertedPendulum's rows where the head misses an end or ends a step that goes on, the
  reward is off by about a step's whole reward with it (10 and 1; 1.3 to 9.3 and 0.04 to 0.99 without).
  Stays solved, seeds 0-4, before -> after (one run at a time, the other core
  running the test suite for part of it): MountainCarContinuous sac+dyna 2,000, 6,000, none within 10,000, 4,000,
  3,000 -> 2,000, 5,000, 3,000, 6,000, 6,000 (every seed solved, seed 2 included; median 4,000 -> 5,000, IQM 4,333
  -> 4,667, worst 6,000; first passes 2,000, 6,000, none, 4,000, 3,000 -> 2,000, 5,000, 3,000, 3,000, 4,000, median
  4,000 -> 3,000; wall 5.9x -> 4.7x the stock median; worst check -0.69 at 2,000 both): issue 14's <= 3,000 is
  still MISSED; Acrobot ppo+dyna 256 on every seed both ways (wall 37-45 s a run); InvertedPendulum sac+dyna
  1,500, 1,500, 2,000, 2,000, 3,000 -> 1,500, 1,500, 1,500, 1,500, 2,500 (median 2,000 -> 1,500: issue 14's <=
  1,500 now MET; IQM 1,833 -> 1,500; first pass 1,500 on every seed; wall 1.8x -> 1.1x, run mostly alone this
  time; worst check +0.00 both).
  InvertedDoublePendulum sac+dyna, rerun the same way (`--env InvertedDoublePendulum-v5 --algos sac+dyna --seeds 5`,
  one run at a time; seeds 3 and 4 beside test runs on the other core; records before the clip in
  `experiments/one_reward_range/`): stays solved at 4,000, 5,000, 3,000, 2,000, 8,000 -> none within 15,000, 5,000,
  5,000, none, 5,000 (median 4,000 -> 5,000: issue 14's <= 6,000 still met on the median, but 2 seeds of 5 do not
  stay solved; IQM 4,000 -> > 8,333); first passes 4,000, 5,000, 3,000, 2,000, 2,000 -> 4,000, 5,000, 3,000,
  9,000, 2,000 (median 4,000 both). Seed 0 scores 9,360 at most checks from its first pass, but one or two of the
  10 check episodes fall at 6,000, 9,000, 12,000 and 14,000; seed 3 passes at 9,000 and 10,000 only, sits at 6,674
  to 8,471 elsewhere (one to three episodes falling) and drops to 1,510 at 15,000.
  Wall 5.1x -> 4.2x the stock median (1,241 s); worst check -0.00 (at 14,000). The InvertedPendulum `mpc` row is
  still the record from before the clip. Is it the clip? Today's code with the clip to all real rewards
  (`docs/benchmarks/experiments/whole_range_clip/`: the patch, a script for one seed of this row, the records):
  seed 3 stays solved from 2,000 and seed 0 from 4,000, each its record from before the clip to the last digit
  of every check, so nothing else has changed for this env and the kind clip alone costs these two seeds. Per
  seed, kind against all real rewards: none vs 4,000, 5,000 vs 5,000, 5,000 vs 3,000, none vs 2,000, 5,000 vs
  8,000. The clip stays shipped for now (MountainCarContinuous and InvertedPendulum gained from it, and it is the
  more accurate reward on every env where it acts); why it costs InvertedDoublePendulum is not yet known.
  Measured first and not shipped (`docs/benchmarks/experiments/terminal_reward_weight/`, the patch there): weighting
  the terminal rows in the reward's loss as in the termination head's (up to 50x). It fits the goal's bonus (57 to
  93 predicted on the 3 rows above) but spreads it over the states before the goal (57 predicted at x = 0.30, where
  a step pays at most 0), and the dream's agent learns to push towards it from everywhere: MountainCarContinuous
  seed 0 passed first at 2,000 and did not stay solved within 10,000 (checks between -86 and 93), seed 1 sat at -93
  from 3,000 to 10,000 (stays solved at 2,000 and 6,000 before); stopped after 2 seeds.
- Imagined data kept for one MBPO epoch (measured, not shipped; `--hyperparams
  docs/benchmarks/experiments/imagined_capacity_16k/cap16k.yaml`, records there, one run at a time):
  `imagined_capacity` 16,000 (400 branches x 10 steps x 4 refit periods, as MBPO's `model_retain_epochs=1`) instead
  of 100,000, which no run of the table fills, so the branches of the first models, fitted on 64 real steps, stay
  to the end. Stays solved: Pendulum sac+dyna the same on every seed (600, 800, 400, 800, 1,400; the first four
  runs end before 16,000 rows); MountainCarContinuous sac+dyna seeds 0-2 at 4,000, 4,000 and none within 10,000
  (seed 2 at -92.8 from 5,000 on) against 2,000, 5,000 and 3,000; CartPole dqn+dyna seed 0 passes first at 500 and
  swings between 51 and 500 as before. Stopped there: the default stays 100,000.
- More MBPO branches (measured, not shipped; `--hyperparams
  docs/benchmarks/experiments/rollout_batch_size_4000/rb4000.yaml`, records there, one run at a time):
  `rollout_batch_size` 4,000 instead of 400 branches per 250 real steps. At `utd_ratio` 10 and `real_ratio` 0.5 a
  250-step period samples about 320,000 imagined rows from the 4,000 its branches add (MBPO started 100,000
  branches a period), so each imagined row serves some 80 batches; with 4,000 it serves about 8. Stays solved:
  Pendulum sac+dyna 1,200, 600, 600, 800, 1,400 against 600, 800, 400, 800, 1,400 (median 800 both, in about the
  same wall time: 154-286 s a run); CartPole dqn+dyna seeds 0 and 1 pass at no check within 5,000 (best 287 and
  329; first passes at 500 and 1,000 with 400), stopped after 2 seeds. The reuse of imagined rows is not what
  holds these rows back; the default stays 400.
- `utd_ratio` 20 instead of 10 (measured, not shipped;
  `--hyperparams docs/benchmarks/experiments/utd_ratio_20/utd20.yaml`, records there, one run at a time). The
  `utd_ratio` 5 experiment above found Pendulum's real steps doubled in about the same wall time, so the other
  way was measured. Stays solved, seeds 0-4: Pendulum sac+dyna 400, 400, 400, 600, 1,400 against 600, 800, 400,
  800, 1,400 (median 800 -> 400: issue 14's <= 600 met with it; first passes 400, 400, 400, 600, 1,400), in the
  same wall time (median 231 s a run against 227 s; 1.8x stock SAC's both ways): there the agent learns at the
  pace of its gradient steps. InvertedPendulum sac+dyna seed 0 passes and stays at 1,500 as at 10, its checks
  alike (66, 149, 1,000 against 78, 217, 1,000), in 689 s against 386 s (2.0x stock SAC's median instead of
  1.1x): there the model's data, not the gradient steps, set the pace; stopped after 1 seed. CartPole dqn+dyna
  passes first at 4,500 and 5,000 on seeds 0 and 1 (500 and 1,000 at 10) and stays solved on neither; stopped
  after 2 seeds (`utd_ratio` 5 lost passes too: 10 is DQN's best of the three). MountainCarContinuous
  sac+dyna: seed 0 stays solved at 2,000 as at 10 (404 s against 254 s), seed 1 never passes within 10,000 (at
  -92.8 from 2,000 on: the policy that pushes all the time, seed 2's failure of the earlier records; 5,000 at 10);
  stopped after 2 seeds. So 20 is not shipped: it halves Pendulum's real steps and costs the other rows wall time
  or seeds. InvertedDoublePendulum, Reacher and HalfCheetah have not run at 20.
- CartPole DQN's exploration (measured, not built; `--hyperparams
  docs/benchmarks/experiments/dqn_exploration_800/expl800.yaml`, records there, one run at a time): epsilon decays
  over 800 real steps instead of rl-zoo's 8,000 (what an exploration paced by the agent's gradient steps would give
  at `utd_ratio` 10), so the real data come from the dream-trained greedy policy after the first 800 steps instead
  of a mostly random one (epsilon 0.7 at 1,500 with 8,000). dqn+dyna passes first at 500, 1,000, 2,750, 1,500 and
  1,500 (rl-zoo's: 500, 1,000, 3,500, 2,000, 1,500) and stays solved on seed 1 only, at 2,500 (rl-zoo's: none);
  the other seeds' checks still swing between 14 and 500 with epsilon at 0.04. The greedy policy's flips are not
  the random exploration's data, so the callback does not reschedule the agent's exploration.
- CartPole DQN's extra gradient steps spread over the real steps (measured, not shipped;
  `docs/benchmarks/experiments/dqn_spread_extra_steps/`, its patch and records, one run at a time): rl-zoo's DQN
  trains every 256 real steps, so the callback's 2,432 extra steps came in one burst at each rollout's end; run
  instead about 10 per real step as the steps come (target syncs after each 128 as before), the policy moves
  step by step. Passes first at 500, 1,000, 1,500, 5,000 and none within 5,000 (the default: 500, 1,000, 3,500,
  2,000, 1,500), stays solved on seed 1 only, at 4,000: the bursts are not why its greedy checks swing.
- Issue 14 reran every `+dyna` row with `DynaCallback()` and no arguments on the stock rows (the per-env `_DYNA`
  table is gone); the stock rows are the earlier records (same settings, same protocol; records from before the
  stays-solved metric that stopped at their first pass show `n/a` there). Against the tuned rows' records
  (stays solved, seeds 0-4): CartPole ppo+dyna 1,000, 752, 752, 1,000, 752 -> 1,256, 752, 752, 752, 1,000 (median
  752 both; the tuned fit is gone, the fit schedule does as well); Acrobot ppo+dyna, now on rl-zoo's own 16 x 256
  rollouts (the tuned row used 8 x 32), 504, 504, 1,256, 504, 504 -> 256 on every seed (dream updates go by real
  steps, mid-rollout); Pendulum sac+dyna 800, 800, 1,800, 1,800, 2,400 -> 800, 600, 800, 1,000, 1,600 (median
  1,800 -> 800). CartPole dqn+dyna on rl-zoo's settings (learning_starts 1,000, train_freq 256, exploration over
  8,000 steps) passes early (250 and 500 real steps on seeds 0 and 2, trained on the dream before
  learning_starts) but stays solved on 1 seed of 5 (seed 3, from 2,000): its checks swing between 50 and 500 (see
  the curves); the tuned row (learning from the 250th step, every step, exploring over 500) stayed solved on 4 of 5.
  Its first rerun, with all 2,560 extra gradient steps of a rollout towards one frozen target, passed first at
  4,250 on seed 0; a rerun with a target sync every 5 extra steps (the stock steps per env step x the sync interval)
  diverged on every seed (returns near 9); the shipped rule syncs after each 128 (the stock agent's burst).
- Wall time and do-no-harm (table columns "wall vs stock" and "worst check vs stock"; issue 14 asks for <= 3x and
  >= -0.10): Acrobot ppo+dyna 0.3x, +1.07; CartPole ppo+dyna 3.1x, +0.56 (the rerun of the on-policy rows below;
  3.3x with the earlier dream rounds, 6.1x in the first records, where stock PPO solved CartPole in 19 s);
  InvertedPendulum sac+dyna 3.3x, -0.02; Pendulum
  sac+dyna 3.5x against the stock records that stopped at their first pass (2.0x against the rerun below, whose
  stock runs go on until they stay solved, on a more loaded machine), -0.20 (at the first check, 200 real steps);
  CartPole dqn+dyna 6.4x against the rerun stock DQN
  (9.7x against the earlier one), -0.49. Except for the rerun rows, the +dyna rows ran on 2 busy cores (other
  benchmarks beside them), the stock rows before, so those wall ratios lean against +dyna. Pusher-v5 (outside the
  table; `dream-envs bench --env Pusher-v5 --algos sac sac+dyna --seeds 1 --budget 5000 --threshold 0
  --eval-every 1000`): stock SAC -50.6, -47.3, -46.7, -52.5, -54.7 at 1,000-5,000 real steps, SAC +
  `DynaCallback()` -60.4, -60.3, -47.6, -47.3, -42.2 (issue 14 found -334 to -239 before the trust rule and the fit
  schedule), at 12x the wall time (858 s vs 71 s). Two more MuJoCo envs outside the table, 1 seed, commits
  59fea29-28016fc (nothing off-policy changed between them; records in
  `docs/benchmarks/experiments/outside_the_table/`; `dream-envs bench --env ENV --algos sac sac+dyna --seeds 1
  --budget 5000 --eval-every 1000 --keep-training`): Swimmer-v5, stock SAC 46.0, 25.7, 23.1,
  24.7, 29.0 at 1,000-5,000 real steps, SAC + `DynaCallback()` 21.9, 30.5, 34.7, 37.7, 9.8 (worst -0.07 of the
  distance from a random policy's 1.0 to 360, at 1,000), 1,188 s vs 94 s; Hopper-v5, rl-zoo's SAC (10,000
  random steps first, so an untrained policy through 5,000) 17.6-17.7, SAC + `DynaCallback()` 150, 121, 196, 128
  and 116 (trained on the dream before `learning_starts`), 1,045 s. Rerun with refit_growth (commit 91aac94, the
  +dyna runs alone, beside two other runs; `refit_growth_*.jsonl`): Swimmer 26.1, -8.4, 39.8, 32.8, 38.6 (worst
  -0.095, at 2,000: within issue 14's -0.10, barely), 1,128 s; Hopper 172, 108, 172, 123, 125, 1,280 s.
- Before the dream-round change below, CartPole-v1 and Acrobot-v1, `ppo` and `ppo+dyna`, were rerun side by side on
  commit 3ea4248 (issue 15's seeding gives a seed's ensemble other initial weights than before), one run at a time
  while a HalfCheetah run (and, for the first stock CartPole seeds, two more runs) held the other core. CartPole
  ppo+dyna stays solved at 1,000, 752, 752, 1,000 and 1,000 real steps (the earlier records: 1,256, 752, 752, 752,
  1,000), stock PPO at 17,504, 9,256, 11,000, 5,256 and 7,000 (the same checks as before, now with the stays-solved
  metric); wall 96 s vs 29 s (3.3x; the stock seeds 0-2 ran with two more runs beside them, which flatters the ratio).
  Acrobot ppo+dyna stays solved at 256, 512, 752, 256 and 512 (earlier: 256 on every seed), stock PPO at 49,504,
  8,256, 42,512, 13,264 and 21,264. Stock DQN, rerun with the stays-solved metric: it stays solved on 3 of 5 seeds
  within 30,000 real steps (at 27,250, 29,250 and 8,250; seeds 0 and 1 pass first at 5,000 and 9,500 and never hold 3
  checks).
- On-policy dream rounds (records in `docs/benchmarks/experiments/dream_rounds/`; commit 59fea29, one run at a
  time beside two other runs on the 2 cores): the same imagined steps per refit as `DynaCallback()`'s earlier 10
  rounds of 256 dream envs, cut into more and smaller rounds, since PPO moves only so far per `train()` (its clip
  range and epochs). Stays solved, seeds 0-4: 10 x 256 (rerun, the same figures as the records) CartPole 1,000,
  752, 752, 1,000, 1,000 and Acrobot 256, 512, 752, 256, 512; 20 x 128 CartPole 752, 752, 752, 1,000, 752 and
  Acrobot 256 on every seed; 40 x 64 CartPole 752, 752, 2,256, 752, 752 and Acrobot 256, 256, 256, 256, 1,008.
  Median wall per run (CartPole, Acrobot): 142 and 42 s, 130 and 35 s, 134 and 56 s. 20 x 128 won on both rows
  and is the default since commit 28016fc; the CartPole and Acrobot `ppo` and `ppo+dyna` rows were rerun on it
  side by side (stock first, one run at a time beside two other runs): ppo+dyna stays solved at 752, 752, 752,
  1,000 and 752 on CartPole (issue 14's <= 500 median still missed; its worst-seed <= 1,000 met) and at 256 on
  every Acrobot seed; the stock rows repeat their earlier real steps.
  Outside the table, A2C on CartPole (rl-zoo's 8 envs x 5 steps; `dream-envs bench --env CartPole-v1 --algos a2c
  a2c+dyna --seeds 3`, and the old rounds with `--hyperparams
  docs/benchmarks/experiments/dream_rounds/a2c_rounds10_envs256.yaml`) goes the other way: with 20 x 128 no seed
  passes 475 within 5,000 real steps (best checks 356, 132 and 249), with 10 x 256 seeds 0-2 pass first at 3,504,
  3,504 and 3,256 (seed 1 stays solved); stock A2C passes first at 8,752, 8,256 and 8,000. A2C's `train()` is one
  gradient step on the whole round, so the smaller round halves its batch; a rule for the round that serves both
  (e.g. a round of at least as many imagined steps whatever the agent's `n_steps`) is not yet measured. Both
  `a2c+dyna` settings stay at or above stock A2C's return at nearly every check. Rounds of about the same imagined
  steps as PPO's, 20 of 820 envs (`a2c_rounds20_envs820.yaml`), did not restore it: seed 2 passes at 2,752 and
  stays, seeds 0 and 1 do not pass within 5,000 (best 246 and 256).
- The off-policy branch length (`rollout_horizon`, 10 by default off-policy; 100 on-policy, where the uncertainty
  cutoff ends the dream episodes) had never been measured against a longer one. With 50 (commit 91aac94, the cutoff
  on; `--hyperparams docs/benchmarks/experiments/off_policy_horizon/dqn_horizon50.yaml` and
  `pendulum_horizon50.yaml`, one run at a time beside two others), stays solved, seeds 0-4, horizon 10 -> 50:
  CartPole dqn+dyna 3,250, none, none, none, none -> 1,500, none, none, none, 4,000 (first passes 500, 4,750,
  2,250, none, 4,500 -> 1,000, 2,500, 2,500, 1,000, 1,500; seed 3 then falls to returns of 18-70, below stock DQN);
  Pendulum sac+dyna 600, 800, 400, 800, 1,400 -> 1,400, 400, 400, 800, 1,400 (median 800 both). Neither row meets
  its target with it and Pendulum does not gain, so the default stays 10. Where CartPole DQN's harm comes from
  (worst check -0.54 against stock DQN): with `real_ratio=1.0` (the extra gradient steps on real batches only, no
  imagined data; `docs/benchmarks/experiments/dqn_real_batches/real_only.yaml`, seeds 0 and 1) the checks also sit
  at 50-100 from 2,500 to 4,000 real steps where stock DQN's sit at 100-200, passing 500 now and then (seed 0
  first at 750, seed 1 at 2,500, neither stays): the ten-fold gradient steps on rl-zoo's DQN (learning rate
  2.3e-3), not the model's data, hold it down; with the agent's own gradient steps (`utd_ratio=None`, the second
  alternative below) it stays near stock DQN and does not stay solved either.
- Three measured alternatives, kept out of the defaults (records in `docs/benchmarks/experiments/`, same scripts,
  same machine state as the rerun above):
  - a smaller dream round, `n_dream_envs` 64 instead of 256 (2,048 imagined steps per round instead of 8,192;
    `--hyperparams docs/benchmarks/experiments/dream_round_size/nd64.yaml`): Acrobot stays solved at 256 on every
    seed in 17 s (default: median 512 in 44 s), CartPole at 1,000, 1,504, 752, 1,256 and 1,504 (median 1,256,
    worse than the default's 1,000) in 49 s (1.7x stock). One row gains real steps and the other loses them, so
    the default stays, and CartPole's wall stays above 3x.
  - DQN with `DynaCallback(utd_ratio=None)` (the agent's own gradient steps, no extra ones;
    `--hyperparams docs/benchmarks/experiments/dqn_own_gradient_steps/utdnone.yaml`): first passes at 4,500 and
    1,000 real steps on 2 seeds of 5, none stays solved within 5,000 (checks between 60 and 250 after the first
    1,000 steps), in 156-239 s each: no better than the default's 1 of 5.
  - the next-observation termination head (`DynaCallback(ensemble_kwargs={"termination_input": "next_obs"})`;
    `--hyperparams docs/benchmarks/experiments/termination_head/next_obs.yaml`; commit ab41918, where it was briefly
    the default, two runs at a time beside the test suite). Its F1 on random-action data is higher or equal in 14
    of 15 cells (docs/termination.md), and in the dream of an InvertedPendulum SAC run (1,500 real steps, seed 0) the
    trunk's head caught 78% of the imagined falls at a precision of 83%. Stays solved, seeds 0-4, against the
    records: InvertedPendulum sac+dyna 3,000, 2,000, 2,000, 2,500, 2,000 (records 2,500, 2,000, 2,000, 2,500,
    2,000: median 2,000 both); CartPole ppo+dyna 752 on every seed (records: 752 but 1,000 on seed 3); Acrobot
    ppo+dyna 752, then 256 on seeds 1-4 (records: 256 on every seed); CartPole dqn+dyna on no seed (first passes
    750, none, 500, 2,000, none; records: 1 of 5); MountainCarContinuous sac+dyna 3,000, none, 3,000, none, none
    within 10,000 (records 2,000-4,000 on every seed). Rerun side by side on commit d665ee1 with the default head,
    MountainCarContinuous seeds 0 and 1 end the same way (3,000; never solved, every check near -93: seed 1 never
    reaches the goal, whatever the head), so that row's records, made before issue 15's seeding change, do not
    replay on today's code and its comparison is open. No row gained and CartPole DQN lost its one staying seed, so
    the trunk's column stays the default and the head is opt-in.
- MountainCarContinuous-v0 (5 seeds) and InvertedDoublePendulum-v5 (1 seed) ran after issue 14's defaults were
  set, with no change for them (`--n-jobs 1`: one run at a time on a 2-core machine whose other core was
  busy). The stock SAC is rl-zoo's for MountainCarContinuous (gSDE, 32 gradient steps per 32 real steps,
  `learning_starts` 0) and SB3's defaults for InvertedDoublePendulum (rl-zoo has no entry for gymnasium's v5).
  SAC + `DynaCallback()` stayed solved (those records, now in `docs/benchmarks/experiments/fixed_refit_period/`) at
  2,000, 3,000, 4,000, 3,000 and 4,000 real steps on MountainCarContinuous (stock: 18,000, 13,000, 14,000, 13,000,
  9,000) and at 4,000 on InvertedDoublePendulum seed 0 (stock 15,000; first
  pass 13,000), learned reward and termination. Wall time is 3.9x and 3.1x the stock agent's (issue 14 asks for
  <= 3x); the worst check against stock is -0.05 (at 1,000 real steps) and +0.02.
- Reacher-v5 (issue 14: SAC + `DynaCallback()` reaches, within 5,000 real steps, stock SAC's return at 20,000):
  seed 0, stock SAC (SB3's defaults) scores -5.72 at 20,000 real steps (-7.58 at 5,000); SAC + `DynaCallback()`
  scores -9.66, -7.10, -7.98, -5.00 and -4.34 at 1,000-5,000: it passes -5.72 at 4,000. Wall: 784 s for its 5,000
  steps against 308 s for the stock agent's 20,000. Seeds 1 and 2 (commit 78e7d3f, beside two other runs): stock
  -4.81 and -5.25 at 20,000 (median of the 3 seeds: -5.25); SAC + `DynaCallback()` -9.54, -7.96, -8.01, -6.63,
  -5.66 and -7.46, -6.80, -6.07, -5.32, -4.94 at 1,000-5,000 (862 and 816 s). The +dyna median at 5,000 (-4.94)
  passes the stock median: met on the median; seed 1 (-5.66) stays below its own stock seed's -4.81. Seeds 3 and 4
  (commit 33ef3cc, same off-policy code, beside one to three other runs): stock -4.94 and -5.02 at 20,000 (395 and
  516 s); SAC + `DynaCallback()` -8.60, -6.53, -5.76, -6.06, -4.90 and -9.72, -6.49, -6.28, -6.76, -6.27 at
  1,000-5,000 (1,054 and 1,051 s). Over 5 seeds the +dyna median at 5,000, -4.94, passes the stock median at
  20,000, -5.02 (met, by 0.08); against its own stock seed, +dyna is ahead on seeds 0, 2 and 3 and behind on 1 and 4
  (-6.27 against -5.02).
- HalfCheetah-v5 (issue 14: SAC + `DynaCallback()` >= 1.5x stock SAC's return at 30,000 real steps, 3 seeds):
  rl-zoo's SAC (10,000 random steps first) scores 870, 3 and 698 at 30,000 real steps (median 698: the bar is
  1,047), in 295-338 s each. SAC + `DynaCallback()`, seed 0 (commit 3ea4248, learned reward and termination),
  scores -259, 540, 2,052, 2,868, 4,085 and 4,627 at 5,000-30,000 real steps: 6.6x the stock median, 5.3x the best
  stock seed. It took 6,062 s on one core beside other runs (18x a stock run's wall time). Seed 1 (stopped at
  15,000 real steps when a session ended, resumed from its checkpoint on commit 8c05000: `resumed_at` in its
  record) scores -264, 860, 2,406, 2,402, 3,140 and 4,567 (6,060 s of training). Seed 2 (stopped at 15,000 real
  steps, resumed on commit 8c05000) scores -200, 101, 1,512, 2,951, 4,074 and 4,486 (6,770 s of training, beside
  two to three other runs on the 2 cores). All 3 seeds pass the bar (median 4,567: 6.5x the stock median).
- InvertedDoublePendulum-v5: stock SAC seeds 1-4 added (commit 04e14fa): it stays solved at 13,000, 11,000, 11,000 and
  13,000 real steps (seed 0: 15,000), so its median is 13,000. SAC + `DynaCallback()` stayed solved (fixed refit
  period; rerun with refit_growth above) at 4,000, 3,000, 3,000, 6,000 and 2,000 (seeds 0-4; median 3,000, worst
  6,000: issue 14's <= 6,000 met; seed 3 passed first at 3,000 and dipped before it held from 6,000), in 1,272, 839,
  974, 1,585 and 610 s (seeds 2-4 on commit 8c05000, one run at a time beside other runs): 3.3x the stock median wall
  (issue 14 asks for <= 3x).
- InvertedPendulum-v5, 5 seeds (seeds 2-4 added on commit 3ea4248, one run at a time beside a HalfCheetah run):
  SAC + `DynaCallback()` stays solved at 2,500, 2,000, 2,000, 2,500 and 2,000 real steps (median 2,000; issue
  14 asks for <= 1,500), stock SAC at 6,000, 12,500, 14,500, 13,000 and 13,500. Seeds 2-4, side by side: 638, 637
  and 432 s against 409, 353 and 342 s.
- Pendulum-v1 stock SAC, rerun with the stays-solved metric (commit 3c6f2d9; the earlier records stopped at their
  first pass and showed `n/a`): the same first passes (3,000, 3,200, 2,600, 3,000 and 5,200 real steps, seeds
  0-4), staying solved from 4,800, 3,200, 2,600, 4,400 and 5,200 (median 4,400), so SAC + `DynaCallback()`'s 800
  is 5.5x fewer real steps to stay solved. The rerun ran 3 runs on the 2 cores (81-150 s per run; the earlier
  first-pass runs took 53-104 s), which flatters the 2.0x wall ratio.
- `mpc` is `MPCAgent(env)` with no arguments (PETS: a probabilistic ensemble of 5 x (128, 128), CEM over 200
  candidates x 5 TS-1 particles x 3 iterations, horizon 15, a terminal value learned in the model, pink-noise
  random actions for the first 200 steps, a refit every 200), learned reward and termination, checked after each
  refit (every 200 real steps, 10 episodes as one batch of plans). CartPole-v1 (commit 3c6f2d9): stays solved from
  200, 200, 200, 200 and 400 real steps (seeds 0-4; every check 482.5-500), issue 14's <= 400 met on every seed.
  A run takes 1,073-1,363 s on one core beside two other runs, most of it the checks' planning (10 x 500 planned
  actions per check) and the value fit after each refit. Those records say `model_fits` 0 and `device` "auto":
  the runner read neither from MPCAgent until commit 88787e0 (a fit every 200 real steps from the 200th, on the
  CPU). Pendulum-v1, seeds 0 and 1 (same commit) and seeds 2 and 3 (commit 164a762, whose records carry the
  model fits and the device): each stays solved from 200 real steps (issue 14: <= 400; every check -98 to -149), in
  1,124, 1,355, 1,480 and 1,541 s (beside two to three other runs). Seed 4 (commit 164a762) is the miss: its first
  two models plan to -1,493 and -1,357, then -437, -205 and -198 at 600-1,000 real steps; it passes first at
  1,000, where its budget ends, so it does not count as staying solved (median 200 over the 5 seeds: issue 14's
  <= 400 is met on the median, not on every seed). InvertedPendulum-v5, seed 0 (commit 1d4df59, beside two other
  runs on the 2 cores; `dream-envs bench --env InvertedPendulum-v5 --algos mpc --seeds 1`): not solved within its
  budget of 2,000 real steps (issue 14: <= 1,000); its checks climb 37, 38, 44, 70, 66, 86, 110, 188, 204, 333 at
  200-2,000 real steps, in 6,308 s, most of it the checks' planning once episodes grow long. Seeds 1-4 did not run:
  a seed takes close to 2 hours on a shared core.
- Acrobot: the first model fits see no terminal transition (the reward is always -1), so the dream's only signal is
  where its uncertainty cutoff truncates an episode; bootstrapping from the value of never-seen, high-energy states
  works as an exploration bonus.
- `muzero` and `world-models` are dream-envs' own agents (`dream_envs.agents.MuZero`, `WorldModels`), 3 seeds,
  checked every 1,000 real steps (not 250: a check plays 10 episodes of 50-simulation searches, or renders every
  frame), so their figures are rounded up to the next 1,000; the checks play the 10 episodes as one batch.
  MuZero's CartPole settings are in `_OWN` of `sb3_plugins/benchmark/hyperparams.py` (50 simulations per action,
  learning rate 1e-3, one gradient step per real step, 50-step value targets, self-play visit temperature
  1 -> 0.25 at the 2,000th real step, 8 self-play envs, EfficientZero's consistency loss on).
  World Models sees only 64x64 frames and
  trains its controller only in its dream; this page holds it to CartPole's 475 like every other row, while its
  own issue asks for 195 (see [world_models.md](world_models.md), where V and M are fitted longer; this row runs
  WorldModels' class defaults). A check at 20,000 real steps sees the
  controller trained on the first 16,000 frames: the fit after the last 4,000-frame collection comes after the
  budget's last step, as PPO's last update does.
- MuZero meets its target (>= 475 within 20,000 real steps on every seed): 6,000, 12,000 and 9,000 real steps. The
  earlier settings, with the self-play visit temperature dropping further to 0.1 at 4,000 real steps, solved 2 of 3
  (8,000 and 9,000; seed 1 stalled near a return of 125), and with 25 simulations per action 1 of 3 (seed 0 at
  9,000; seed 1 stalled near 110; seed 2's search policy collapsed onto one action, return 10). Variants with 25
  simulations, same protocol: priority exponent 0.5 (seed 0 stalls near 97); priority exponent 0.5 with the
  temperature floor 0.25 (seed 0 solved at 20,000, seed 1 best 458 at 14,000); the temperature floor alone (1/3:
  seed 1 solved at 5,000, seed 0 best 474, seed 2 best 138).
"""


def _targets(records: list[dict]) -> list[str]:
    rows = {(r["env"], r["algo"]): r for r in summarize(records)}
    lines = ["## Targets: DynaCallback() and MPCAgent() with no arguments (issue 14), and MuZero (first pass)",
             "", "| env | agent | metric | target: median (worst seed) | measured: median (worst seed) | seeds | "
             "met |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for (env, algo), (prefix, median, worst) in TARGETS.items():
        row = rows.get((env, algo))
        metric = "stays solved" if prefix else "first pass"
        bar = f"<= {median:,}" + (f" (<= {worst:,})" if worst else "")
        if row is None or row[f"{prefix}median_real_steps"] is None:
            lines.append(f"| {env} | {algo} | {metric} | {bar} | not run | | |")
            continue
        columns = [f"{prefix}median_real_steps"] + ([f"{prefix}max_real_steps"] if worst is not None else [])
        # a figure that an unsolved run makes a lower bound (> N) meets no target
        met = all(row[c] <= target and c not in row["lower_bounds"] for c, target in zip(columns, (median, worst)))
        shown = [format_steps(row, f"{prefix}{column}") for column in ("median_real_steps", "max_real_steps")]
        lines.append(f"| {env} | {algo} | {metric} | {bar} | {shown[0]} ({shown[1]}) | {row['runs']} | "
                     f"{'yes' if met else 'NO'} |")  # fmt: skip
    return lines + _return_targets(records)


def _return_at(record: dict, steps: int) -> float | None:
    return next((value for at, value in record["curve"] if at == steps), None)


def _return_targets(records: list[dict]) -> list[str]:
    """The rows of :data:`RETURN_TARGETS`: a bar from the stock runs' curves, the +dyna runs' figure against it."""
    lines = []
    for (env, algo), (kind, steps, stock_algo, stock_steps, factor) in RETURN_TARGETS.items():
        runs = [r for r in records if (r["env"], r["algo"]) == (env, algo)]
        stock = [_return_at(r, stock_steps) for r in records if (r["env"], r["algo"]) == (env, stock_algo)]
        stock = [value for value in stock if value is not None]
        scale = f"{factor:g} x " if factor != 1 else ""
        what = (f"return >= {scale}{stock_algo}'s at {stock_steps:,}, within {steps:,} real steps" if kind == "reach"
                else f"return at {steps:,} >= {scale}{stock_algo}'s at {stock_steps:,}")  # fmt: skip
        if not runs or not stock:
            lines.append(f"| {env} | {algo} | {what} | | not run ({len(stock)} stock, {len(runs)} +dyna runs) | | |")
            continue
        bar = factor * float(np.median(stock))
        if kind == "reach":  # per run, the first check at the bar; an unreached bar counts as never (inf)
            firsts = [next((at for at, value in r["curve"] if value >= bar and at <= steps), np.inf) for r in runs]
            figure, met = float(np.median(firsts)), float(np.median(firsts)) <= steps
            shown = f"{figure:,.0f} real steps" if np.isfinite(figure) else f"not within {steps:,}"
        else:
            values = [_return_at(r, steps) for r in runs]
            if any(value is None for value in values):
                lines.append(f"| {env} | {algo} | {what} | | runs without a check at {steps:,} | | |")
                continue
            figure = float(np.median(values))
            met, shown = figure >= bar, f"{figure:,.2f}"
        lines.append(f"| {env} | {algo} | {what} | bar {bar:,.2f} (median of {len(stock)} stock runs) | {shown} | "
                     f"{len(runs)} | {'yes' if met else 'NO'} |")  # fmt: skip
    return lines


def write_page(path: Path = ROOT / "docs" / "benchmarks.md") -> None:
    results = ResultsDir(ROOT / OUT, must_exist=True)
    assert dream_envs(["report", str(ROOT / OUT)]) == 0
    summary = (ROOT / OUT / "summary.md").read_text()
    body = summary[summary.index("Real steps are") :].replace("](curves.png)", "](benchmarks/curves.png)")
    lines = [
        "# Benchmarks: real steps to solve, stock SB3 agents vs + DynaCallback, MPCAgent, MuZero and World Models",
        "",
        "Made on the project's 2-core CPU machine (each run on 1 torch thread, 2 runs at a time) by",
        "`python benchmarks/benchmarks_page.py`, which runs exactly these commands and then this page's targets table:",
        "",
        "```bash",
        *(shlex.join(["dream-envs", *command]) for command in COMMANDS),
        "```",
        "",
        body.rstrip(),
        "",
        *_targets(results.records()),
        "",
        NOTES,
    ]
    atomic_write_text(path, "\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page-only", action="store_true", help="only re-write the page from saved results")
    args = parser.parse_args()
    if not args.page_only:
        os.chdir(ROOT)  # the commands, as recorded in results.jsonl, name the output folder relative to the repo
        for command in COMMANDS:
            status = dream_envs(command)
            if status:
                sys.exit(status)
    write_page()
