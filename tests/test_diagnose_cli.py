"""`dream-envs diagnose` end to end on a shipped model, and its errors."""

import json
import subprocess
import sys
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
    assert summary["calibration"]["horizon"] == 5 and summary["calibration"]["n_samples"] == 150
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
    ],
)
def test_diagnose_bad_input(tmp_path, args, message):
    completed = diagnose(*args, "--out", str(tmp_path / "out"))
    assert completed.returncode == 2 and message in completed.stderr, completed.stderr
