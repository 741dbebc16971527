"""What the model sees of gymnasium spaces: flat float observations and encoded actions.

Observations: any ``Box`` (flattened to 1-D for the model, reshaped back for the agent).
Actions: ``Discrete`` (one-hot) or ``Box`` (flattened, clipped to its bounds and scaled to [-1, 1] where bounded).
Anything else is rejected at the boundary with the space named, never deep inside a tensor op.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

__all__ = [
    "check_observation_space",
    "check_action_space",
    "check_actions",
    "check_observations",
    "check_sb3_action_space",
    "obs_dim",
    "action_input_dim",
    "encode_action",
    "space_to_dict",
    "space_from_dict",
    "spaces_equal",
    "out_of_bounds_report",
]


def check_observation_space(space: Any) -> spaces.Box:
    """Return ``space`` if a dynamics model can work on it, else raise a ``TypeError`` naming it."""
    if not isinstance(space, spaces.Box):
        raise TypeError(
            f"observation space {space!r} is not supported: dream-envs models need a Box observation space. "
            "Wrap the env with gymnasium.wrappers.FlattenObservation to turn Dict/Tuple/Discrete "
            "observations into a flat Box."
        )
    if not np.issubdtype(space.dtype, np.floating):
        raise TypeError(
            f"observation space {space!r} has dtype {space.dtype}; dream-envs models need a floating Box "
            "(wrap the env with gymnasium.wrappers.DtypeObservation or TransformObservation to cast it)."
        )
    return space


def check_action_space(space: Any) -> spaces.Discrete | spaces.Box:
    """Return ``space`` if a dynamics model can encode it, else raise a ``TypeError`` naming it."""
    if isinstance(space, spaces.Discrete):
        return space
    if isinstance(space, spaces.Box):
        if not np.issubdtype(space.dtype, np.floating):
            raise TypeError(f"action space {space!r} has dtype {space.dtype}; a Box action space must be float")
        return space
    raise TypeError(
        f"action space {space!r} is not supported: dream-envs models take Discrete or Box actions. "
        "MultiDiscrete/MultiBinary/Dict action spaces can be wrapped into one of these first."
    )


def check_sb3_action_space(space: spaces.Space, where: str) -> None:
    """Refuse a ``Discrete(n, start)`` with ``start != 0`` where SB3 picks the actions: SB3's agents send
    ``0 .. n-1`` whatever the start (its own ``check_env`` warns of the same), which such a space does not hold."""
    if isinstance(space, spaces.Discrete) and int(space.start) != 0:
        raise ValueError(
            f"{where} got the action space {space!r}: SB3's agents send actions 0..{int(space.n) - 1} for a Discrete "
            f"space whatever its start, and {int(space.start)}..{int(space.start) + int(space.n) - 1} is this "
            "space's range. Shift the env's actions to start at 0 (e.g. a gymnasium.ActionWrapper adding the start)."
        )


def _numeric(value: Any, name: str) -> np.ndarray | torch.Tensor:
    """``value`` as an array or tensor of numbers, or a ``ValueError`` for strings, objects and booleans."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise ValueError(f"{name} must hold real numbers, got a {value.dtype} tensor")
        return value.detach()  # data, not a graph: a tensor that requires grad is read like any other
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise ValueError(f"{name} must be numbers of one shape, got {value!r} ({error})") from None
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, got {value!r} (dtype {array.dtype})")
    return array


def check_actions(
    space: spaces.Discrete | spaces.Box, action: Any, rows: int, name: str = "action", read_values: bool = True
) -> Any:
    """``rows`` raw actions checked against ``space``: ``(rows,)`` int64 indices (Discrete) or ``(rows, act_dim)``
    float32 (Box), as a numpy array, or a tensor on the tensor's own device when given one.

    Discrete actions must be whole numbers in ``[start, start + n)`` (``0.7`` or ``NaN`` is not an action); Box
    actions must be finite (out-of-bound values are clipped by the model, as by most envs). Values of a CUDA tensor
    are not read (that would wait for the device), nor any where ``read_values`` is False (the library's own inner
    loops): only the shape and dtype are checked.

    :raises ValueError: naming ``name``, the offending value(s) and what the space expects
    """
    values = _numeric(action, name)
    discrete = isinstance(space, spaces.Discrete)
    width = 1 if discrete else int(np.prod(space.shape))
    shape = () if discrete else tuple(space.shape)
    # one action per row, as a batch of the space's shape (or flattened); a single one may come without the batch
    allowed = {(rows, *shape), (rows, width)} | ({shape, (width,)} if rows == 1 else set())
    if discrete or width == 1:
        allowed |= {(rows,)} | ({()} if rows == 1 else set())
    if tuple(values.shape) not in allowed:
        expected = f"{rows} action(s)" if discrete else f"{rows} action(s) of shape {space.shape}"
        raise ValueError(f"{name} of shape {tuple(values.shape)} does not fit {space!r}: expected {expected}, as an "
                         f"array of shape {(rows, *shape)}")  # fmt: skip
    on_host = not (isinstance(values, torch.Tensor) and values.device.type != "cpu")
    flat = values.reshape(rows) if discrete else values.reshape(rows, width)
    if on_host and read_values:
        host = flat.numpy() if isinstance(flat, torch.Tensor) else flat
        if discrete:
            low, high = int(space.start), int(space.start) + int(space.n) - 1
            bad = ~np.isfinite(host) | (host != np.round(host)) | (host < low) | (host > high)
            if bad.any():
                offending = host[bad][:5].tolist()
                raise ValueError(f"{name} {offending} not in {space!r}: expected whole numbers in {low}..{high}")
        elif not np.isfinite(host).all():
            raise ValueError(f"{name} holds NaN or inf values ({int((~np.isfinite(host)).sum())} of {host.size})")
    if isinstance(flat, torch.Tensor):
        return flat.long() if discrete else flat.float()
    return flat.astype(np.int64) if discrete else flat.astype(np.float32)


def check_observations(space: spaces.Box, obs: Any, name: str = "obs", read_values: bool = True) -> Any:
    """Observations as ``(B, obs_dim)`` float32 (a numpy array, or a tensor on its own device when given one), from
    one observation of the space's shape, a batch ``B x *shape``, or a batch already flattened to ``B x obs_dim``.

    Values of a CUDA tensor are not read, nor any where ``read_values`` is False; elsewhere NaN and inf are refused.

    :raises ValueError: naming ``name``, the shape given and the shapes the space allows
    """
    values = _numeric(obs, name)
    shape, flat_dim = tuple(space.shape), int(np.prod(space.shape))
    given = tuple(values.shape)
    if given == shape:
        rows = 1
    elif len(given) >= 1 and (given[1:] == shape or given[1:] == (flat_dim,)):
        rows = given[0]  # may be 0: an empty batch, which each caller judges
    else:
        raise ValueError(f"{name} of shape {given} does not fit the observation space {space!r}: expected {shape} "
                         f"or a batch (B, {', '.join(map(str, shape))})")  # fmt: skip
    flat = values.reshape(rows, flat_dim)
    if isinstance(flat, torch.Tensor):
        flat = flat.float()
        if read_values and flat.device.type == "cpu" and not torch.isfinite(flat).all():
            raise ValueError(f"{name} holds NaN or inf values")
        return flat
    if read_values and not np.isfinite(flat).all():
        raise ValueError(f"{name} holds NaN or inf values ({int((~np.isfinite(flat)).sum())} of {flat.size})")
    with np.errstate(over="ignore"):
        flat = flat.astype(np.float32, copy=False)
    if read_values and not np.isfinite(flat).all():  # finite as given, beyond float32 (the model's precision)
        raise ValueError(f"{name} holds values beyond float32's range (+-3.4e38), which the model computes in")
    return flat


def obs_dim(space: spaces.Box) -> int:
    """Length of the flattened observation."""
    return int(np.prod(space.shape))


def action_input_dim(space: spaces.Discrete | spaces.Box) -> int:
    """Width of the encoded action the network takes as input."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape))


def encode_action(space: spaces.Discrete | spaces.Box, action: torch.Tensor) -> torch.Tensor:
    """Encode a batch of raw actions for the network.

    :param space: the env's action space
    :param action: ``B`` integer indices (Discrete) or ``B x *shape`` floats (Box)
    :return: ``B x action_input_dim`` float tensor
    """
    if isinstance(space, spaces.Discrete):
        index = action.reshape(-1).long() - int(space.start)
        return torch.nn.functional.one_hot(index, int(space.n)).float()
    flat = action.reshape(action.shape[0], -1).float()
    low = torch.as_tensor(space.low.reshape(-1), dtype=flat.dtype, device=flat.device)
    high = torch.as_tensor(space.high.reshape(-1), dtype=flat.dtype, device=flat.device)
    bounded = torch.isfinite(low) & torch.isfinite(high)
    # Bounded dims are clipped then mapped to [-1, 1], so the model never sees torques the env would clip away.
    clipped = torch.minimum(torch.maximum(flat, low), high)
    scaled = 2.0 * (clipped - low) / torch.where(bounded, high - low, torch.ones_like(low)) - 1.0
    return torch.where(bounded, scaled, flat)


def space_to_dict(space: spaces.Space) -> dict:
    """A ``weights_only``-safe description of a Box or Discrete space (plain lists, strings and numbers)."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": space.low.reshape(-1).tolist(),
            "high": space.high.reshape(-1).tolist(),
        }
    raise TypeError(f"cannot describe space {space!r}: only Box and Discrete are stored in model files")


def space_from_dict(description: dict) -> spaces.Discrete | spaces.Box:
    """Inverse of :func:`space_to_dict`."""
    kind = description.get("type")
    if kind == "Discrete":
        return spaces.Discrete(int(description["n"]), start=int(description["start"]))
    if kind == "Box":
        shape = tuple(int(s) for s in description["shape"])
        dtype = np.dtype(description["dtype"])
        low = np.asarray(description["low"], dtype=dtype).reshape(shape)
        high = np.asarray(description["high"], dtype=dtype).reshape(shape)
        return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    raise ValueError(f"unknown space type {kind!r} in model file; expected 'Box' or 'Discrete'")


def spaces_equal(a: spaces.Space, b: spaces.Space) -> bool:
    """Structural equality that treats Box bounds with a float tolerance."""
    if type(a) is not type(b):
        return False
    if isinstance(a, spaces.Discrete):
        return a.n == b.n and a.start == b.start
    if isinstance(a, spaces.Box):
        return (
            a.shape == b.shape
            and a.dtype == b.dtype
            and np.allclose(a.low, b.low, equal_nan=True)
            and np.allclose(a.high, b.high, equal_nan=True)
        )
    return a == b


def out_of_bounds_report(space: spaces.Box, values: np.ndarray) -> tuple[set[int], str] | None:
    """Where observations leave a Box: ``None`` when none does, else the offending flat dimensions and a text that
    counts, per dimension, the values below ``low`` and above ``high`` and how far they went.

    :param space: the declared observation space
    :param values: ``N x obs_dim`` observations (flattened)
    """
    low, high = space.low.reshape(-1), space.high.reshape(-1)
    values = np.asarray(values).reshape(len(values), -1)
    below, above = (values < low).sum(0), (values > high).sum(0)
    dims = np.flatnonzero((below + above) > 0)
    if len(dims) == 0:
        return None
    parts = []
    for d in dims:
        counts = []
        if below[d]:
            counts.append(f"{int(below[d])} below low={low[d]:g} (min {values[:, d].min():g})")
        if above[d]:
            counts.append(f"{int(above[d])} above high={high[d]:g} (max {values[:, d].max():g})")
        parts.append(f"dim {int(d)}: " + ", ".join(counts))
    return {int(d) for d in dims}, f"of {len(values)} observations, " + "; ".join(parts)
