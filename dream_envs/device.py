"""``device="auto"`` resolved once, the way SB3 does it."""

from __future__ import annotations

import torch

__all__ = ["generator_device", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; anything else must name a device torch knows."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be 'auto', a device string or a torch.device, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device={device!r} is not a device torch knows (try 'auto', 'cpu' or 'cuda')") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available here; use device='auto'")
    return resolved


def generator_device(generator: torch.Generator | None, default: torch.device | str) -> torch.device:
    """Where a draw from ``generator`` must be made: torch draws only on a generator's own device, so noise for a
    model on another device is drawn there and moved (``default`` when ``generator`` is None: the global one)."""
    return torch.device(default) if generator is None else generator.device
