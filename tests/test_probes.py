"""The diagnostic probes in benchmarks/ (goal_reward.py, dqn_values.py, reward_kinds.py) do what they promise."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_probe_prints_one_line_per_probe():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "goal_reward.py"), "--seed", "0", "--steps", "96", "--every", "48",
         "--known"], capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line["real_steps"] for line in lines] == [48, 96]
    last = lines[-1]
    assert len(last["actions"]) == len(last["values"]) == 4 and all(-1 <= a <= 1 for a in last["actions"])
    assert last["real_goal"] >= 0 and 0.0 <= last["imagined_goal_share"] <= 1.0 and 0.0 <= last["trust"] <= 1.0
    assert lines[0]["imagined"] == 0 and last["imagined"] > 0  # the first fit, at 64 real steps, branched


def test_dqn_values_probe_prints_one_line_per_probe():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dqn_values.py"), "--algo", "dqn", "--steps", "256",
         "--every", "128"],  # rl-zoo DQN collects 256 real steps per rollout
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line["real_steps"] for line in lines] == [128, 256]
    assert all(line["max_q_mean"] <= line["max_q_p95"] <= line["max_q_max"] for line in lines)


def test_reward_kinds_measures_each_clip_against_the_real_rewards(tmp_path):
    import gymnasium as gym

    from dream_envs import TransitionBuffer

    spec = importlib.util.spec_from_file_location("reward_kinds", ROOT / "benchmarks" / "reward_kinds.py")
    reward_kinds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reward_kinds)
    env = gym.make("InvertedPendulum-v5")
    test = TransitionBuffer.from_env(env).collect(env, 1000, seed=1).transitions()
    record = reward_kinds.measure("InvertedPendulum-v5", 250, test)
    groups = record["groups"]
    by_verdict = sum(cells["rows"] for name, cells in groups.items() if name != "all rows")
    assert groups["all rows"]["rows"] == 1000 == by_verdict
    assert record["terminal_rows"] > 0 and record["ranges"]["terminal_reward_range"] == [0.0, 0.0]
    # InvertedPendulum pays 1 on a step that goes on and 0 on the last: where the head is right, its kind is exact
    right = groups["head right"]
    assert right["its kind"] == 0.0 < right["all real rewards"]
    reward_kinds.write([record], tmp_path)
    assert "| InvertedPendulum-v5 | 250 |" in (tmp_path / "reward_kinds.md").read_text()
    assert json.loads((tmp_path / "reward_kinds.json").read_text())[0]["groups"] == groups
