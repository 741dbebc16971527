import numpy as np
import pytest
import torch
from gymnasium import spaces

from dream_envs.spaces import (
    check_action_space,
    check_observation_space,
    encode_action,
    space_from_dict,
    space_to_dict,
    spaces_equal,
)


def test_discrete_actions_are_one_hot_with_start_offset():
    space = spaces.Discrete(3, start=-1)
    encoded = encode_action(space, torch.tensor([-1, 0, 1]))
    assert torch.equal(encoded, torch.eye(3))


def test_box_actions_are_clipped_and_scaled_to_unit_interval():
    space = spaces.Box(low=np.array([-2.0, 0.0]), high=np.array([2.0, np.inf]), dtype=np.float32)
    encoded = encode_action(space, torch.tensor([[-2.0, 5.0], [4.0, -3.0], [0.0, 1.0]]))
    # Bounded dim: -2 -> -1, 4 clipped to 2 -> 1, 0 -> 0. Unbounded dim passes through unchanged.
    assert torch.allclose(encoded, torch.tensor([[-1.0, 5.0], [1.0, -3.0], [0.0, 1.0]]))


@pytest.mark.parametrize(
    "space",
    [spaces.Discrete(4), spaces.Dict({"a": spaces.Box(-1, 1, (2,))}), spaces.Box(0, 255, (4,), dtype=np.uint8)],
)
def test_unsupported_observation_spaces_name_the_space(space):
    with pytest.raises(TypeError, match="observation space"):
        check_observation_space(space)


@pytest.mark.parametrize(
    "space", [spaces.MultiDiscrete([2, 3]), spaces.MultiBinary(3), spaces.Box(0, 3, (2,), dtype=np.int64)]
)
def test_unsupported_action_spaces_name_the_space(space):
    with pytest.raises(TypeError, match="action space"):
        check_action_space(space)


@pytest.mark.parametrize(
    "space",
    [spaces.Discrete(5, start=2), spaces.Box(-np.inf, np.inf, (2, 3), dtype=np.float32), spaces.Box(-1, 1, (1,))],
)
def test_space_descriptions_round_trip(space):
    assert spaces_equal(space_from_dict(space_to_dict(space)), space)


def test_spaces_equal_tells_different_bounds_apart():
    assert not spaces_equal(spaces.Box(-1, 1, (3,)), spaces.Box(-2, 2, (3,)))
    assert not spaces_equal(spaces.Box(-1, 1, (3,)), spaces.Discrete(3))
