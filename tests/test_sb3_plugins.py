import json

import gymnasium as gym
import pytest
import torch

from dream_envs import EnsembleDynamics
from sb3_plugins import pretrain, train_in_dream


def test_train_in_dream_counts_only_dream_steps():
    result = train_in_dream(
        "Dream-CartPole-v0",
        "ppo",
        128,
        seed=0,
        eval_episodes=1,
        algo_kwargs={"n_steps": 64, "batch_size": 32},
        device="cpu",
    )
    assert result.dream_steps == 128 and result.real_id == "CartPole-v1"
    assert 8 <= result.real_mean <= 500


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dream_id": "Dream-Nope-v0"}, "dream_id"),
        ({"algo": "ddpg9"}, "algo"),
        ({"total_timesteps": 0}, "total_timesteps"),
        ({"eval_episodes": 0}, "eval_episodes"),
        ({"algo": "sac"}, r"algo 'sac' needs a Box action space; Dream-CartPole-v0 has Discrete\(2\)"),
        ({"dream_id": "Dream-Pendulum-v0", "algo": "dqn"}, "algo 'dqn' needs a Discrete action space"),
        ({"device": "tpu"}, "device='tpu' is not a device torch knows"),
    ],
)
def test_train_in_dream_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_in_dream(**kwargs)


@pytest.fixture
def tiny_recipe(monkeypatch):
    """A CartPole recipe small enough for the fast suite, in place of the real one."""
    tiny = pretrain.Recipe("ppo", random_steps=400, rounds=1, dream_steps=128, real_steps_per_round=200,
                           hidden_sizes=(16,), ensemble_size=3, num_elites=2, max_epochs=2)  # fmt: skip
    monkeypatch.setitem(pretrain.RECIPES, "CartPole-v1", tiny)
    return tiny


def test_pretrain_script_makes_a_loadable_model_and_docs(tmp_path, tiny_recipe):
    pretrain.main(
        ["--env", "CartPole-v1", "--seed", "1", "--out", str(tmp_path / "models"), "--docs", str(tmp_path / "docs")]
    )
    torch.set_num_threads(1)
    env = gym.make("CartPole-v1")
    model = EnsembleDynamics.load(tmp_path / "models" / "CartPole-v1.pt", env.observation_space, env.action_space)
    assert model.config.hidden_sizes == (16,) and model.start_states is not None
    record = json.loads((tmp_path / "docs" / "pretrained" / "CartPole-v1.json").read_text())
    assert record["real_steps"] == 600
    assert set(record["mae"]) == {"random policy", "dream-trained agent"}
    assert len(record["mae"]["random policy"]["10"]) == 4
    assert "## CartPole-v1" in (tmp_path / "docs" / "pretrained_models.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "-1"], "--seed must be in [0, "),
        (["--seed", str(2**32)], "--seed must be in [0, "),  # SB3 refused it after the first fit
        (["--out", "{file}"], "--out '{file}': '{file}' is a file; expected a folder"),
        (["--docs", "{file}"], "--docs '{file}': '{file}' is a file; expected a folder"),
        (["--out", "{file}/models"], "--out '{file}/models': '{file}' is a file; expected a folder"),
    ],
)
def test_pretrain_options_are_refused_before_any_training(tmp_path, capsys, monkeypatch, args, message):
    (tmp_path / "taken").write_text("")
    monkeypatch.setattr(pretrain, "train_pretrained", lambda *a: pytest.fail("trained before refusing"))
    with pytest.raises(SystemExit) as exit_info:
        pretrain.main(["--env", "CartPole-v1", *[a.format(file=tmp_path / "taken") for a in args]])
    assert exit_info.value.code == 2 and message.format(file=tmp_path / "taken") in capsys.readouterr().err


def test_pretrain_is_reproducible_by_seed(tmp_path, tiny_recipe):
    for run in ("a", "b"):
        pretrain.main(["--env", "CartPole-v1", "--seed", "3", "--out", str(tmp_path / run), "--docs", str(tmp_path)])
    a = torch.load(tmp_path / "a" / "CartPole-v1.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "CartPole-v1.pt", weights_only=True)
    for name, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][name]), name
    assert torch.equal(a["start_states"], b["start_states"])
