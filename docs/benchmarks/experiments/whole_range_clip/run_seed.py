"""One seed of the benchmark's InvertedDoublePendulum sac+dyna row with the imagined reward clipped to all real
rewards (the clip before commit 7e0f7f7) instead of those of the step's kind, appended to a JSONL file.

    git worktree add /tmp/wt_whole 9aae363 && git -C /tmp/wt_whole apply \
        docs/benchmarks/experiments/whole_range_clip/whole_range.patch
    cd /tmp && OMP_NUM_THREADS=1 PYTHONPATH=/tmp/wt_whole python \
        /path/to/docs/benchmarks/experiments/whole_range_clip/run_seed.py 3 out.jsonl

The settings are `dream-envs bench --env InvertedDoublePendulum-v5 --algos sac+dyna --seeds 5 --device cpu`'s.
"""

import json
import os
import sys

os.environ["DREAM_WHOLE_RANGE_CLIP"] = "1"  # read by the patched EnsembleDynamics._clip_reward

from dream_envs.io import atomic_write_text  # noqa: E402
from sb3_plugins.benchmark.plan import plan_runs  # noqa: E402
from sb3_plugins.benchmark.runner import run_one  # noqa: E402

seed, out = int(sys.argv[1]), sys.argv[2]
spec = [s for s in plan_runs("InvertedDoublePendulum-v5", ["sac+dyna"], seeds=5, device="cpu") if s.seed == seed][0]
record = run_one(spec)
record["experiment"] = "whole-range reward clip (DREAM_WHOLE_RANGE_CLIP=1, whole_range.patch)"
old = open(out).read() if os.path.exists(out) else ""
atomic_write_text(out, old + json.dumps(record) + "\n")
print(seed, record["real_steps_to_threshold"], record["real_steps_to_stay_solved"], record["wall_seconds"], flush=True)
