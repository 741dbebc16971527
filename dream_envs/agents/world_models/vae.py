"""V: the convolutional variational autoencoder that compresses a 64x64 RGB frame into a small latent ``z``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from dream_envs.checks import check_int, check_number, seed_int
from dream_envs.device import generator_device

__all__ = ["ConvVAE", "VAELoss", "fit_vae", "frames_to_tensor"]

FRAME_SIZE = 64


def frames_to_tensor(frames: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """``B x 64 x 64 x 3`` uint8 frames -> ``B x 3 x 64 x 64`` floats in [0, 1] on ``device``."""
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:  # PixelObservation's are read-only
        frames = frames.copy()  # torch would warn that it cannot write to the array it wraps
    frames = torch.as_tensor(frames).to(device)
    return frames.permute(0, 3, 1, 2).float().div_(255.0)


class VAELoss(NamedTuple):
    """Mean per-frame losses of a batch: ``total = reconstruction + kl_weight * sum_d max(kl_d, kl_tolerance)``.

    Example::

        import torch
        from dream_envs.agents.world_models import ConvVAE

        loss = ConvVAE(latent_size=4, channels=(4, 8, 8, 16), seed=0).loss(torch.rand(2, 3, 64, 64))
        print(loss.reconstruction.item(), loss.kl.item())
    """

    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


class ConvVAE(nn.Module):
    """The World Models vision model: four stride-2 4x4 convolutions down to ``2 x 2``, a Gaussian latent of
    ``latent_size``, and four stride-2 transposed convolutions back to a ``3 x 64 x 64`` frame.

    The paper's widths are ``(32, 64, 128, 256)`` (CarRacing, Doom); the same layout with half of them
    reconstructs CartPole's cart and pole as well at a third of the cost on a CPU (docs/world_models.md).

    :param latent_size: ``Z``, the size of the latent vector
    :param channels: output channels of the four encoder convolutions (the decoder mirrors them)
    :param seed: seeds the weight initialisation (a private generator; global torch state is untouched)

    Example::

        import numpy as np
        from dream_envs.agents.world_models import ConvVAE

        vae = ConvVAE(latent_size=8, channels=(4, 8, 8, 16), seed=0)
        frames = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
        mu, logvar = vae.encode(frames)
        print(mu.shape, vae.decode(mu).shape)  # (5, 8) and (5, 3, 64, 64)
    """

    def __init__(self, latent_size: int = 32, channels: tuple[int, ...] = (32, 64, 128, 256), seed: int | None = None):
        super().__init__()
        check_int("latent_size", latent_size)
        channels = tuple(channels)
        if len(channels) != 4 or not all(isinstance(c, (int, np.integer)) and c >= 1 for c in channels):
            raise ValueError(f"channels must be 4 positive integers (one per convolution), got {channels!r}")
        self.latent_size, self.channels = int(latent_size), tuple(int(c) for c in channels)
        c1, c2, c3, c4 = self.channels
        with seeded_init(seed):
            self._build(c1, c2, c3, c4)

    def _build(self, c1: int, c2: int, c3: int, c4: int) -> None:
        # 64 -> 31 -> 14 -> 6 -> 2 pixels per side
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c1, 4, 2), nn.ReLU(), nn.Conv2d(c1, c2, 4, 2), nn.ReLU(),
            nn.Conv2d(c2, c3, 4, 2), nn.ReLU(), nn.Conv2d(c3, c4, 4, 2), nn.ReLU(), nn.Flatten(),
        )  # fmt: skip
        self.to_mu = nn.Linear(4 * c4, self.latent_size)
        self.to_logvar = nn.Linear(4 * c4, self.latent_size)
        # Start nearly deterministic (sigma ~ 0.1): with unit noise at the start, the decoder learns the mean frame
        # and ignores z, a plateau CartPole's few moving pixels never leave (measured: stuck at the mean image).
        nn.init.constant_(self.to_logvar.bias, -5.0)
        self.register_buffer("output_bias_set", torch.tensor(False))
        # 1 -> 5 -> 13 -> 30 -> 64 pixels per side
        self.decoder = nn.Sequential(
            nn.Linear(self.latent_size, 4 * c4), nn.Unflatten(1, (4 * c4, 1, 1)),
            nn.ConvTranspose2d(4 * c4, c3, 5, 2), nn.ReLU(), nn.ConvTranspose2d(c3, c2, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(c2, c1, 6, 2), nn.ReLU(), nn.ConvTranspose2d(c1, 3, 6, 2),
        )  # fmt: skip

    @property
    def device(self) -> torch.device:
        return self.to_mu.weight.device

    @torch.no_grad()
    def init_output_bias(self, frames: np.ndarray) -> None:
        """Start the decoder at the data's mean colour (per channel). From a zero start, the first epoch is spent
        learning the background, and on CartPole the encoder was then ignored (measured)."""
        mean_colour = frames_to_tensor(frames[: min(len(frames), 4096)], self.device).mean(dim=(0, 2, 3))  # (3,)
        self.decoder[-1].bias.copy_(mean_colour)
        self.output_bias_set.fill_(True)

    def encode(self, frames: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``B x 64 x 64 x 3`` uint8 frames (or ``B x 3 x 64 x 64`` floats in [0, 1]) -> ``(mu, logvar)``, each
        ``B x Z``."""
        x = frames if torch.is_tensor(frames) and frames.is_floating_point() else frames_to_tensor(frames, self.device)
        if x.shape[-3:] != (3, FRAME_SIZE, FRAME_SIZE):
            raise ValueError(f"frames must be B x 64 x 64 x 3 uint8, got shape {tuple(frames.shape)}")
        features = self.encoder(x)
        return self.to_mu(features), self.to_logvar(features).clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``B x Z`` latents -> ``B x 3 x 64 x 64`` frames in [0, 1]."""
        return self.decoder(z).clamp(0.0, 1.0)

    @torch.no_grad()
    def encode_mean(self, frames: np.ndarray, batch_size: int = 1024) -> torch.Tensor:
        """``mu`` of many uint8 frames, in batches (no gradients): ``N x Z``."""
        if len(frames) == 0:
            return torch.zeros(0, self.latent_size, device=self.device)
        return torch.cat([self.encode(frames[i : i + batch_size])[0] for i in range(0, len(frames), batch_size)])

    def loss(self, x: torch.Tensor, kl_weight: float = 1.0, kl_tolerance: float = 2.0,
             generator: torch.Generator | None = None) -> VAELoss:  # fmt: skip
        """The paper's loss on ``B x 3 x 64 x 64`` frames in [0, 1]: summed squared error per frame, plus the KL
        to N(0, I), each dimension's floored at ``kl_tolerance`` nats (below it the KL gives no gradient, so each
        dimension is free to carry that much information)."""
        mu, logvar = self.encode(x)
        noise = torch.randn(mu.shape, generator=generator, device=generator_device(generator, mu.device)).to(mu.device)
        # The decoder's output is linear, clamped only when decoding: a sigmoid saturates on the white background,
        # and a decoder stuck at an all-white frame (CartPole) gets no gradient for the dark cart (measured).
        reconstruction = self.decoder(mu + noise * (0.5 * logvar).exp())
        reconstruction_loss = (reconstruction - x).pow(2).sum(dim=(1, 2, 3)).mean()
        kl_per_dim = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean(dim=0)  # (Z,)
        # Free bits per dimension: a floor on the sum alone lets the encoder pour everything into one dimension at
        # a tiny scale (measured on CartPole: mu std 0.003 in every dimension), which M cannot model.
        total = reconstruction_loss + kl_weight * kl_per_dim.clamp(min=kl_tolerance).sum()
        return VAELoss(total, reconstruction_loss, kl_per_dim.sum())


def fit_vae(vae: ConvVAE, frames: np.ndarray, epochs: int, batch_size: int = 32, lr: float = 1e-3,
            kl_weight: float = 1.0, kl_tolerance: float = 2.0, generator: torch.Generator | None = None,
            optimizer: torch.optim.Optimizer | None = None) -> list[VAELoss]:  # fmt: skip
    """Train ``vae`` on ``N x 64 x 64 x 3`` uint8 ``frames`` for ``epochs`` passes; returns each epoch's mean losses
    (as floats in a :class:`VAELoss`). Warm start: call it again on the grown data set."""
    epochs, batch_size = check_int("epochs", epochs, minimum=0), check_int("batch_size", batch_size)
    lr = check_number("lr", lr, 0.0, math.inf, low_open=True, high_open=True)
    kl_weight = check_number("kl_weight", kl_weight, 0.0, math.inf, high_open=True)
    kl_tolerance = check_number("kl_tolerance", kl_tolerance, 0.0, math.inf, high_open=True)
    if not bool(vae.output_bias_set):
        vae.init_output_bias(frames)
    optimizer = optimizer or torch.optim.Adam(vae.parameters(), lr=lr)
    history = []
    vae.train()
    draw_on = generator_device(generator, "cpu")  # the order indexes frames in RAM: it comes back to the host
    for _ in range(epochs):
        order = torch.randperm(len(frames), generator=generator, device=draw_on).cpu().numpy()
        sums, batches = np.zeros(3), 0
        for start in range(0, len(frames), batch_size):
            index = np.sort(order[start : start + batch_size])  # sorted: contiguous reads from the frame store
            result = vae.loss(frames_to_tensor(frames[index], vae.device), kl_weight, kl_tolerance, generator)
            optimizer.zero_grad(set_to_none=True)
            result.total.backward()
            optimizer.step()
            sums += [v.item() for v in result]
            batches += 1
        history.append(VAELoss(*(float(v) for v in sums / max(batches, 1))))
    vae.eval()
    return history


@contextmanager
def seeded_init(seed: int | None) -> Iterator[None]:
    """Build modules inside this block for a reproducible default initialisation: the global torch generator is
    seeded inside a fork and restored on exit, so the user's random state is untouched."""
    init_seed = seed_int(seed)
    with torch.random.fork_rng(devices=[]):
        # The CPU generator alone (modules are built on the CPU): torch.manual_seed would reseed CUDA's too, which
        # the fork does not restore.
        torch.random.default_generator.manual_seed(init_seed)
        yield
