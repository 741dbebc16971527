import gymnasium as gym
import numpy as np
import pytest

from dream_envs import ModelFileError, TransitionBuffer


def make_buffer(capacity=1):
    env = gym.make("CartPole-v1")
    return TransitionBuffer.from_env(env, capacity=capacity)


def test_collect_records_episodes_and_start_states():
    env = gym.make("CartPole-v1")
    buffer = TransitionBuffer.from_env(env).collect(env, n_steps=300, seed=1)
    data = buffer.transitions()
    assert len(buffer) == 300
    # Every episode but the first starts right after a terminated/truncated row.
    ends = data.terminated | data.truncated
    assert data.episode_start[0]
    assert np.array_equal(data.episode_start[1:], ends[:-1])
    assert buffer.start_states().shape == (int(data.episode_start.sum()), 4)
    # next_obs of a non-final row is the obs of the following row.
    inside = ~ends[:-1]
    assert np.allclose(data.next_obs[:-1][inside], data.obs[1:][inside])


def test_collect_is_reproducible_by_seed():
    env = gym.make("Pendulum-v1")
    a = TransitionBuffer.from_env(env).collect(env, 50, seed=3).transitions()
    b = TransitionBuffer.from_env(env).collect(env, 50, seed=3).transitions()
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def test_growth_doubles_so_appends_are_amortised():
    buffer = make_buffer(capacity=1)
    capacities = set()
    obs = np.zeros(4, np.float32)
    for _ in range(1000):
        buffer.add(obs, 1, 1.0, obs, False)
        capacities.add(buffer.capacity)
    # Doubling gives ~log2(1000) = 10 reallocations, not 1000.
    assert len(capacities) <= 11
    assert len(buffer) == 1000


def test_nan_transitions_are_rejected_with_a_count():
    buffer = make_buffer()
    obs = np.zeros((5, 4), np.float32)
    next_obs = obs.copy()
    next_obs[1, 2] = np.nan
    next_obs[3, 0] = np.inf
    reward = np.ones(5, np.float32)
    reward[4] = np.nan
    with pytest.raises(ValueError, match=r"rejected 3 of 5 .*next_obs: 2.*|rejected 3 of 5 .*reward: 1"):
        buffer.add(obs, np.zeros(5, np.int64), reward, next_obs, np.zeros(5, bool))
    assert len(buffer) == 0


def test_shape_mismatch_is_a_clear_error():
    buffer = make_buffer()
    with pytest.raises(ValueError, match="observation space"):
        buffer.add(np.zeros(3), 0, 1.0, np.zeros(3), False)


def test_collect_rejects_env_with_other_spaces():
    with pytest.raises(ValueError, match="differ"):
        make_buffer().collect(gym.make("Pendulum-v1"), 10)


@pytest.mark.parametrize("policy", ["random", 3])
def test_collect_refuses_a_policy_that_is_not_a_function_before_a_step(policy):
    env = gym.make("CartPole-v1")
    buffer = make_buffer()
    with pytest.raises(ValueError, match=f"policy must be a function obs -> action, or None .*, got {policy!r}"):
        buffer.collect(env, 10, policy=policy)
    assert len(buffer) == 0


@pytest.mark.parametrize("n_steps", [0, -5, 2.5])
def test_collect_rejects_bad_step_counts(n_steps):
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="n_steps"):
        make_buffer().collect(env, n_steps)


def test_save_load_round_trip(tmp_path):
    env = gym.make("CartPole-v1")
    buffer = TransitionBuffer.from_env(env).collect(env, 120, seed=0)
    path = buffer.save(tmp_path / "data.npz")
    loaded = TransitionBuffer.load(path, env.observation_space, env.action_space)
    for x, y in zip(buffer.transitions(), loaded.transitions()):
        assert np.array_equal(x, y)


def test_load_rejects_foreign_truncated_and_mismatched_files(tmp_path):
    env = gym.make("CartPole-v1")
    with pytest.raises(FileNotFoundError):
        TransitionBuffer.load(tmp_path / "missing.npz", env.observation_space, env.action_space)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a dream-envs transition file"):
        TransitionBuffer.load(foreign, env.observation_space, env.action_space)
    good = TransitionBuffer.from_env(env).collect(env, 50, seed=0).save(tmp_path / "good.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="not a readable"):
        TransitionBuffer.load(truncated, env.observation_space, env.action_space)
    pendulum = gym.make("Pendulum-v1")
    with pytest.raises(ModelFileError, match=r"holds transitions for observation shape \(4,\) and action space "
                                             r"Discrete\(2\), not \(3,\) and Box"):  # fmt: skip
        TransitionBuffer.load(good, pendulum.observation_space, pendulum.action_space)


def test_atomic_write_gives_a_normal_file_mode(tmp_path):
    import os

    from dream_envs.io import atomic_write

    path = atomic_write(tmp_path / "x.bin", lambda f: f.write(b"data"))
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert path.read_bytes() == b"data"


def test_a_save_onto_a_folder_or_below_a_file_is_named_and_writes_nothing(tmp_path):
    from dream_envs.io import atomic_write

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"cannot write '.*afile/m.pt': '.*afile' is a file, not a folder"):
        atomic_write(tmp_path / "afile" / "m.pt", lambda f: f.write(b"data"))
    (tmp_path / "adir").mkdir()
    with pytest.raises(ValueError, match=r"cannot write '.*adir': it is a folder; give a file path inside it"):
        atomic_write(tmp_path / "adir", lambda f: f.write(b"data"))
    with pytest.raises(ValueError, match=r"cannot write '.*models/': it ends with a path separator"):
        atomic_write(f"{tmp_path}/models/", lambda f: f.write(b"data"))  # not a file named "models"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["adir", "afile"]  # no temporary file left behind
