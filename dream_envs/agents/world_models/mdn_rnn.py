"""M: the MDN-RNN, an LSTM over ``(z_t, a_t)`` whose output predicts the next latent as a mixture of Gaussians
(per latent dimension, as in the paper), the reward and the termination of the step."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dream_envs.agents.world_models.vae import seeded_init
from dream_envs.checks import check_int, check_number
from dream_envs.device import generator_device

__all__ = ["MDNRNN", "MDNOutput", "LatentSequences", "MDNLoss", "fit_mdn_rnn"]

_LOG_SIGMA_MIN, _LOG_SIGMA_MAX = -7.0, 2.0


class MDNOutput(NamedTuple):
    """What M predicts for each input step (``K`` mixture components per latent dimension).

    Example::

        import torch
        from dream_envs.agents.world_models import MDNRNN

        out, _ = MDNRNN(4, 2, hidden_size=8, n_mixtures=3, seed=0)(torch.zeros(1, 6, 4), torch.zeros(1, 6, 2))
        print(out.logit_pi.shape, out.reward.shape)  # (1, 6, 4, 3) and (1, 6)
    """

    logit_pi: torch.Tensor  # (B, T, Z, K) unnormalised mixture weights
    mu: torch.Tensor  # (B, T, Z, K)
    log_sigma: torch.Tensor  # (B, T, Z, K)
    reward: torch.Tensor  # (B, T)
    hidden: torch.Tensor  # (B, T, H) the LSTM output h_{t+1}, which (with z_{t+1}) gives the termination logit


class MDNLoss(NamedTuple):
    """Mean losses over the valid steps: latent NLL (nats per latent dimension), reward MSE, termination BCE.

    Example::

        import torch
        from dream_envs.agents.world_models import MDNRNN, LatentSequences

        sequences = LatentSequences(torch.zeros(1, 4, 2), torch.zeros(1, 3, 2), torch.ones(1, 3), torch.zeros(1, 3),
                                    torch.ones(1, 3, dtype=torch.bool), torch.tensor([3]))
        print(MDNRNN(2, 2, hidden_size=8, seed=0).loss(sequences).latent_nll.item())
    """

    total: torch.Tensor
    latent_nll: torch.Tensor
    reward_mse: torch.Tensor
    done_bce: torch.Tensor


class LatentSequences(NamedTuple):
    """Real episodes in latent space, padded to the longest (``S`` sequences of up to ``T`` steps).

    ``z[:, t + 1]`` is the latent that followed ``(z[:, t], actions[:, t])``; ``mask`` marks real steps.

    Example::

        import torch
        from dream_envs.agents.world_models import LatentSequences

        one_episode = LatentSequences(z=torch.zeros(1, 4, 2), actions=torch.zeros(1, 3, 2), rewards=torch.ones(1, 3),
                                      terminated=torch.tensor([[0.0, 0.0, 1.0]]),
                                      mask=torch.ones(1, 3, dtype=torch.bool), lengths=torch.tensor([3]))
        print(one_episode.z.shape)
    """

    z: torch.Tensor  # (S, T + 1, Z)
    actions: torch.Tensor  # (S, T, A) encoded actions
    rewards: torch.Tensor  # (S, T)
    terminated: torch.Tensor  # (S, T) 1.0 at a real termination
    mask: torch.Tensor  # (S, T) bool
    lengths: torch.Tensor  # (S,) long


class MDNRNN(nn.Module):
    """An LSTM with a mixture-density head over the next latent plus reward and termination heads.

    Input per step: ``[z_t, a_t]`` (``latent_size + action_dim``, the action one-hot or scaled to [-1, 1]);
    output from the new hidden state ``h_{t+1}``: ``n_mixtures`` Gaussians per latent dimension for ``z_{t+1}``
    and the reward ``r_t``. The termination logit of the step comes from ``[h_{t+1}, z_{t+1}]`` (a small MLP,
    :meth:`done_logit`): whether an episode ended is visible in the frame it ended on, so in the dream the
    termination follows the sampled latent, and a dreamt fallen pole ends the dream episode.

    :param latent_size: ``Z``
    :param action_dim: width of the encoded action (``n`` for Discrete(n), the flat size for a Box)
    :param hidden_size: ``H``, the LSTM's hidden size (256 in the paper)
    :param n_mixtures: ``K``, Gaussians per latent dimension (5 in the paper)
    :param seed: seeds the weight initialisation (global torch state is untouched)

    Example::

        import torch
        from dream_envs.agents.world_models import MDNRNN

        rnn = MDNRNN(latent_size=4, action_dim=2, hidden_size=16, n_mixtures=3, seed=0)
        out, (h, c) = rnn(torch.zeros(2, 5, 4), torch.zeros(2, 5, 2))  # a batch of 2 sequences of 5 steps
        print(out.mu.shape, h.shape)  # (2, 5, 4, 3) and (2, 16)
        z_next = rnn.sample_latent(rnn.step(torch.zeros(2, 4), torch.zeros(2, 2))[0], tau=1.0)
    """

    def __init__(self, latent_size: int, action_dim: int, hidden_size: int = 256, n_mixtures: int = 5,
                 seed: int | None = None):  # fmt: skip
        super().__init__()
        for name, value in (("latent_size", latent_size), ("action_dim", action_dim), ("hidden_size", hidden_size),
                            ("n_mixtures", n_mixtures)):  # fmt: skip
            check_int(name, value)
        self.latent_size, self.action_dim = int(latent_size), int(action_dim)
        self.hidden_size, self.n_mixtures = int(hidden_size), int(n_mixtures)
        with seeded_init(seed):
            self.lstm = nn.LSTM(self.latent_size + self.action_dim, self.hidden_size, batch_first=True)
            self.head = nn.Linear(self.hidden_size, 3 * self.latent_size * self.n_mixtures + 1)
            self.done_head = nn.Sequential(nn.Linear(self.hidden_size + self.latent_size, 64), nn.ReLU(),
                                           nn.Linear(64, 1))  # fmt: skip

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(h, c)``, each ``B x H``."""
        zeros = torch.zeros(batch, self.hidden_size, device=self.device)
        return zeros, zeros.clone()

    def forward(self, z: torch.Tensor, actions: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[MDNOutput, tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
        """Sequences: ``z`` ``B x T x Z`` and ``actions`` ``B x T x A`` (teacher forcing) -> predictions for every
        step and the final ``(h, c)`` (each ``B x H``); ``state`` None starts from zeros."""
        lstm_state = None if state is None else (state[0].unsqueeze(0), state[1].unsqueeze(0))  # (1, B, H)
        output, (h, c) = self.lstm(torch.cat([z, actions], dim=-1), lstm_state)  # output (B, T, H)
        return self._heads(output), (h.squeeze(0), c.squeeze(0))

    def step(self, z: torch.Tensor, actions: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
             ) -> tuple[MDNOutput, tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
        """One step for a batch: ``z`` ``B x Z``, ``actions`` ``B x A`` -> predictions with ``T`` squeezed out
        (``logit_pi`` ``B x Z x K``, ``reward`` ``B``, ...) and the new ``(h, c)``."""
        out, state = self.forward(z.unsqueeze(1), actions.unsqueeze(1), state)
        return MDNOutput(*(field.squeeze(1) for field in out)), state

    def _heads(self, output: torch.Tensor) -> MDNOutput:
        raw = self.head(output)  # (B, T, 3 Z K + 1)
        mixture = raw[..., :-1].unflatten(-1, (3, self.latent_size, self.n_mixtures))  # (B, T, 3, Z, K)
        log_sigma = mixture[..., 2, :, :].clamp(_LOG_SIGMA_MIN, _LOG_SIGMA_MAX)
        return MDNOutput(mixture[..., 0, :, :], mixture[..., 1, :, :], log_sigma, raw[..., -1], output)

    def done_logit(self, hidden: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        """Termination logit of a step from ``h_{t+1}`` (``... x H``) and ``z_{t+1}`` (``... x Z``): ``...``."""
        return self.done_head(torch.cat([hidden, z_next], dim=-1)).squeeze(-1)

    def loss(self, sequences: LatentSequences, pos_weight: float = 1.0) -> MDNLoss:
        """Teacher-forced losses on a batch of sequences (padding masked out); ``pos_weight`` scales the loss of
        terminal steps, which are rare (one per episode at most)."""
        steps = sequences.mask.shape[1]
        out, _ = self.forward(sequences.z[:, :steps], sequences.actions)
        target = sequences.z[:, 1 : steps + 1].unsqueeze(-1)  # (B, T, Z, 1)
        log_prob = (-0.5 * ((target - out.mu) / out.log_sigma.exp()).pow(2) - out.log_sigma
                    - 0.5 * math.log(2 * math.pi))  # fmt: skip
        log_weights = out.logit_pi - _logsumexp(out.logit_pi)  # (B, T, Z, K) log-softmax
        log_mixture = _logsumexp(log_weights + log_prob).squeeze(-1)  # (B, T, Z)
        mask = sequences.mask.float()
        n_valid = mask.sum().clamp(min=1.0)
        latent_nll = -(log_mixture.mean(dim=-1) * mask).sum() / n_valid
        reward_mse = ((out.reward - sequences.rewards).pow(2) * mask).sum() / n_valid
        done_logit = self.done_logit(out.hidden, target.squeeze(-1))  # (B, T), teacher forced on the real z_{t+1}
        done_bce = F.binary_cross_entropy_with_logits(
            done_logit, sequences.terminated, reduction="none",
            pos_weight=torch.tensor(float(pos_weight), device=self.device),
        )  # fmt: skip
        done_bce = (done_bce * mask).sum() / n_valid
        return MDNLoss(latent_nll + reward_mse + done_bce, latent_nll, reward_mse, done_bce)

    @staticmethod
    def sample_latent(out: MDNOutput, tau: float, uniform: torch.Tensor | None = None,
                      normal: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """Draw ``z_{t+1}`` (``B x Z``) from one step's mixture at temperature ``tau``: the weights' logits are
        divided by ``tau`` and the standard deviations multiplied by ``sqrt(tau)`` (the paper's recipe; > 1 makes
        the dream more random, hence harder to exploit). ``tau = 0`` is the mean of the most likely component.

        :param uniform: ``B x Z`` uniforms choosing the components (drawn from ``generator`` if None)
        :param normal: ``B x Z`` standard normals for the Gaussian noise (drawn if None)
        """
        if tau == 0:
            component = out.logit_pi.argmax(dim=-1, keepdim=True)  # (B, Z, 1)
            return out.mu.gather(-1, component).squeeze(-1)
        device = out.mu.device
        draw_on = generator_device(generator, device)  # torch draws on the generator's device only
        if uniform is None:
            uniform = torch.rand(out.mu.shape[:-1], generator=generator, device=draw_on).to(device)
        if normal is None:
            normal = torch.randn(out.mu.shape[:-1], generator=generator, device=draw_on).to(device)
        logits = out.logit_pi / tau
        # Unnormalised weights and a scaled uniform: torch.softmax over a last dimension of K = 5 is 4-5x slower
        # on a CPU than these elementwise ops (measured: 1.2 ms vs 0.27 ms for 256 x 16 x 5).
        cumulative = (logits - logits.amax(dim=-1, keepdim=True)).exp().cumsum(dim=-1)  # (B, Z, K)
        threshold = uniform.unsqueeze(-1) * cumulative[..., -1:]
        component = (cumulative < threshold).sum(dim=-1, keepdim=True).clamp(max=out.mu.shape[-1] - 1)
        mu = out.mu.gather(-1, component).squeeze(-1)
        sigma = out.log_sigma.gather(-1, component).squeeze(-1).exp()
        return mu + sigma * math.sqrt(tau) * normal


def _logsumexp(x: torch.Tensor) -> torch.Tensor:
    """``logsumexp`` over the last dimension, kept (elementwise ops: faster than torch's on a small last dim)."""
    peak = x.amax(dim=-1, keepdim=True).detach()
    return peak + (x - peak).exp().sum(dim=-1, keepdim=True).log()


def fit_mdn_rnn(model: MDNRNN, sequences: LatentSequences, epochs: int, batch_size: int = 32, lr: float = 1e-3,
                pos_weight: float = 1.0, generator: torch.Generator | None = None,
                grad_clip: float = 1.0) -> list[MDNLoss]:  # fmt: skip
    """Train ``model`` with teacher forcing; returns each epoch's mean losses (floats in an :class:`MDNLoss`).

    Sequences are sorted by length and batched with their neighbours, each batch cut to its longest sequence, so
    short early episodes do not pay for the padding of long later ones.
    """
    epochs, batch_size = check_int("epochs", epochs, minimum=0), check_int("batch_size", batch_size)
    lr = check_number("lr", lr, 0.0, math.inf, low_open=True, high_open=True)
    pos_weight = check_number("pos_weight", pos_weight, 0.0, math.inf, low_open=True, high_open=True)
    grad_clip = check_number("grad_clip", grad_clip, 0.0, math.inf, low_open=True, high_open=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.argsort(sequences.lengths, descending=True)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    history = []
    model.train()
    draw_on = generator_device(generator, "cpu")
    for _ in range(epochs):
        sums, weights = np.zeros(4), 0.0
        for b in torch.randperm(len(batches), generator=generator, device=draw_on).tolist():
            index = batches[b]
            steps = int(sequences.lengths[index].max())
            batch = LatentSequences(
                sequences.z[index, : steps + 1], sequences.actions[index, :steps], sequences.rewards[index, :steps],
                sequences.terminated[index, :steps], sequences.mask[index, :steps], sequences.lengths[index],
            )  # fmt: skip
            result = model.loss(batch, pos_weight)
            optimizer.zero_grad(set_to_none=True)
            result.total.backward()
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            n = float(batch.mask.sum())
            sums += n * np.array([v.item() for v in result])
            weights += n
        history.append(MDNLoss(*(float(v) for v in sums / max(weights, 1.0))))
    model.eval()
    return history
