"""`dream-envs diagnose` end to end on a shipped model, and its errors."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def diagnose(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sb3_plugins", "diagnose", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)  # fmt: skip


def test_diagnose_a_shipped_model(tmp_path):
    options = ["--horizons", "1", "5", "--max-horizon", "8", "--segments", "30", "--calibration-horizon", "5"]
    completed = diagnose("--model", "Dream-Pendulum-v0", "--out", str(tmp_path), *options, "--device", "cpu")
    assert completed.returncode == 0, completed.stderr
    summary = json.loads((tmp_path / "Pendulum-v1.json").read_text())
    assert set(summary["compounding"]) == {"1", "5"} and len(summary["compounding_curve"]["ts1"]) == 8
    calibration = summary["calibration"]["random"]
    assert calibration["horizon"] == 5 and calibration["n_samples"] == 150 and calibration["tolerance"] == 0.1
    assert summary["uncertainty_mode"] == "truncate" and summary["auto_calibration"]["horizon"] == 10
    for name in ("Pendulum-v1_compounding.png", "Pendulum-v1_calibration.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "diagnostics.md").read_text()
    assert "## Pendulum-v1" in page and "dream-envs diagnose --model Dream-Pendulum-v0" in page


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "Dream-Nothing-v0"], "neither a registered dream id"),
        (["--model", "Dream-CartPole-v0", "--env", "Pendulum-v1"], "models CartPole-v1, not --env Pendulum-v1"),
        (["--model", "Dream-CartPole-v0", "--horizons", "0", "5"], "--horizons (k) must be >= 1"),
        (["--model", "Dream-CartPole-v0", "--horizons", "60"], "--max-horizon 50 is below the largest --horizons"),
        (["--model", "Dream-CartPole-v0", "--segments", "2", "--calibration-horizon", "3"], "at least 100"),
        (["--model", "Dream-CartPole-v0", "--policy", "nowhere.zip"], "no such SB3 agent file"),
        (["--model", "Dream-CartPole-v0", "--policy", "a.zip", "b.zip"], "one file for all models or one per --model"),
        (
            ["--model", "Dream-CartPole-v0", "--policy", "random", "--policy-algo", "ppo", "sac"],
            "one algorithm for all",
        ),
        (  # named even where the policy is 'random'
            ["--model", "Dream-CartPole-v0", "--policy", "random", "--policy-algo", "ppo2"],
            "--policy-algo must be one of",
        ),
        (["--model", "Dream-CartPole-v0", "--tolerance", "0"], "--tolerance must be a finite number > 0"),
        (["--model", "Dream-CartPole-v0", "--tolerance", "inf"], "--tolerance must be a finite number > 0"),
        (["--model", "Dream-CartPole-v0", "--threshold", "nan"], "--threshold must be a finite number >= 0"),
        (["--model", "Dream-CartPole-v0", "--threshold", "-1"], "--threshold must be a finite number >= 0"),
        (["--model", "Dream-CartPole-v0", "--seed", "-1"], "--seed must be >= 0"),
        (
            ["--model", "Dream-CartPole-v0", "--env", "NoSuchEnv-v9"],
            "unknown env id 'NoSuchEnv-v9': not in gymnasium's registry",
        ),
    ],
)
def test_diagnose_bad_input(tmp_path, args, message):
    completed = diagnose(*args, "--out", str(tmp_path / "out"))
    assert completed.returncode == 2 and message in completed.stderr, completed.stderr
    assert not (tmp_path / "out").exists()  # refused before the folder is made


def test_diagnose_measures_a_policy_beside_random_actions(tmp_path):
    from stable_baselines3 import PPO

    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0, device="cpu").learn(64).save(tmp_path / "p.zip")
    options = ["--horizons", "1", "--max-horizon", "5", "--segments", "20", "--calibration-horizon", "5"]
    completed = diagnose("--model", "Dream-CartPole-v0", "--policy", str(tmp_path / "p.zip"), "--out", str(tmp_path),
                         *options, "--device", "cpu")  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    summary = json.loads((tmp_path / "CartPole-v1.json").read_text())
    assert set(summary["calibration"]) == {"random", "policy"}
    page = (tmp_path / "diagnostics.md").read_text()
    assert "| random |" in page and "| policy |" in page and "Uncertainty mode at the cutoff: `truncate`" in page


def test_diagnose_refuses_a_policy_of_another_algorithm_or_other_spaces(tmp_path):
    from stable_baselines3 import PPO

    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0, device="cpu").save(tmp_path / "cartpole.zip")
    PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, seed=0, device="cpu").save(tmp_path / "pendulum.zip")
    cases = [
        (["--policy", str(tmp_path / "cartpole.zip"), "--policy-algo", "sac"], "could not be loaded as a SAC agent"),
        (["--policy", str(tmp_path / "pendulum.zip")], "acts on observation space Box"),
        (["--policy", str(tmp_path / "notes.zip")], "is not an SB3 agent file: not a zip archive"),
        (["--policy", str(tmp_path / "other.zip")], "zip archive without SB3's 'data' and 'policy.pth' entries"),
    ]
    (tmp_path / "notes.zip").write_text("not a zip")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "a zip of something else")
    for args, message in cases:
        completed = diagnose("--model", "Dream-CartPole-v0", *args, "--out", str(tmp_path / "out"))
        assert completed.returncode == 2 and message in completed.stderr, completed.stderr
        assert not (tmp_path / "out").exists()  # refused before any work


def test_one_policy_file_serves_every_model_and_the_json_is_strict(tmp_path):
    from stable_baselines3 import PPO

    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0, device="cpu").save(tmp_path / "p.zip")
    options = ["--horizons", "1", "--max-horizon", "5", "--segments", "20", "--calibration-horizon", "5"]
    completed = diagnose("--model", "Dream-CartPole-v0", "Dream-CartPole-v0", "--policy", str(tmp_path / "p.zip"),
                         "--out", str(tmp_path), *options, "--device", "cpu")  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count(", policy)") == 2
    # Two models of one env: their own files and page sections, never one overwriting the other.
    assert not (tmp_path / "CartPole-v1.json").exists()
    for n in (1, 2):
        assert (tmp_path / f"CartPole-v1_{n}.json").exists() and (
            tmp_path / f"CartPole-v1_{n}_calibration.png"
        ).exists()
        assert f"## CartPole-v1_{n}" in (tmp_path / "diagnostics.md").read_text()
    text = (tmp_path / "CartPole-v1_1.json").read_text()
    summary = json.loads(text, parse_constant=lambda constant: pytest.fail(f"{constant} in strict JSON"))
    random = summary["calibration"]["random"]
    assert random["bad_fraction"] == 0.0 and random["cutoff_recall"] is None  # nothing bad to recall: null, not NaN


def test_diagnose_refuses_a_file_as_out_before_any_work(tmp_path):
    (tmp_path / "taken").write_text("")
    completed = diagnose("--model", "Dream-CartPole-v0", "--out", str(tmp_path / "taken"))
    assert completed.returncode == 2 and "is a file; expected a folder" in completed.stderr, completed.stderr


def _model_file(path: Path, env_id: str, named: str | None) -> str:
    """A small fitted model of ``env_id``'s spaces, saved naming ``named`` as its env (or none)."""
    import gymnasium as gym

    from dream_envs import EnsembleDynamics, TransitionBuffer

    env = gym.make(env_id)
    model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=2, num_elites=2,
                             hidden_sizes=(16,), env_id=named, device="cpu", seed=0)  # fmt: skip
    model.fit(TransitionBuffer.from_env(env).collect(env, 200, seed=0), max_epochs=2)
    model.save(path)
    return str(path)


def test_model_files_are_checked_against_their_env_before_any_work(tmp_path):
    cartpole = _model_file(tmp_path / "cartpole.pt", "CartPole-v1", "CartPole-v1")
    elsewhere = _model_file(tmp_path / "elsewhere.pt", "CartPole-v1", "PointMassNowhere-v0")
    unnamed = _model_file(tmp_path / "unnamed.pt", "CartPole-v1", None)
    with_module = _model_file(tmp_path / "with_module.pt", "CartPole-v1", "gone_module:Gone-v0")
    cases = [
        ([with_module], "models 'gone_module:Gone-v0': unknown env id 'gone_module:Gone-v0'"),  # not 'your_module:...'
        ([with_module, "--env", "CartPole-v1"], "models gone_module:Gone-v0, not --env CartPole-v1"),
        ([elsewhere], "models 'PointMassNowhere-v0', which is not registered here: pass --env "
                      "your_module:PointMassNowhere-v0"),
        ([cartpole, "--env", "Pendulum-v1"], "models CartPole-v1, not --env Pendulum-v1"),
        ([unnamed], "does not name its env; pass --env"),
        ([cartpole, unnamed, "--env", "Acrobot-v1"], "models CartPole-v1, not --env Acrobot-v1"),
        ([unnamed, "--env", "Acrobot-v1"], "has the spaces (Box("),  # a 4-dim model for Acrobot's 6
    ]  # fmt: skip
    for args, message in cases:
        completed = diagnose("--model", *args, "--out", str(tmp_path / "out"))
        assert completed.returncode == 2 and message in completed.stderr, (args, completed.stderr)
        assert "Traceback" not in completed.stderr
        assert not (tmp_path / "out").exists()  # refused before the folder is made


def test_a_shorter_max_horizon_keeps_the_default_horizons_within_it(tmp_path):
    options = ["--max-horizon", "8", "--segments", "30", "--calibration-horizon", "5", "--device", "cpu"]
    completed = diagnose("--model", "Dream-CartPole-v0", "--out", str(tmp_path), *options)
    assert completed.returncode == 0, completed.stderr
    assert set(json.loads((tmp_path / "CartPole-v1.json").read_text())["compounding"]) == {"1", "5"}
