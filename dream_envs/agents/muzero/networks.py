"""MuZero's three functions as one torch module: representation ``h``, dynamics ``g`` and prediction ``f``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from dream_envs.agents.muzero.support import from_support

__all__ = ["MuZeroNetwork", "scale_hidden"]


def scale_hidden(hidden: torch.Tensor) -> torch.Tensor:
    """Min-max scale each hidden state to [0, 1] (MuZero, appendix G), so dynamics inputs keep one range."""
    low = hidden.min(-1, keepdim=True).values
    high = hidden.max(-1, keepdim=True).values
    return (hidden - low) / (high - low).clamp_min(1e-5)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class MuZeroNetwork(nn.Module):
    """Fully connected MuZero networks for flat observations and Discrete actions.

    - representation: observation -> hidden state (scaled to [0, 1])
    - dynamics: (hidden state, one-hot action) -> next hidden state (scaled) and reward logits
    - prediction: hidden state -> policy logits and value logits

    Rewards and values are categorical over ``2 * support_size + 1`` bins of MuZero's squashed scale
    (:mod:`~dream_envs.agents.muzero.support`).

    :param obs_dim: flattened observation size
    :param n_actions: number of discrete actions
    :param latent_size: size of the hidden state
    :param hidden_size: width of every hidden layer
    :param support_size: reward/value bins on each side of zero
    :param zero_heads: start the reward and value heads at zero (uniform bins: an expected value of 0)

    Example::

        import torch
        from dream_envs.agents.muzero import MuZeroNetwork

        net = MuZeroNetwork(obs_dim=4, n_actions=2, latent_size=8, hidden_size=16)
        hidden, value, policy_logits = net.initial_inference(torch.zeros(3, 4))
        hidden, reward, value, policy_logits = net.recurrent_inference(hidden, torch.tensor([0, 1, 1]))
        print(hidden.shape, reward.shape, policy_logits.shape)
    """

    def __init__(self, obs_dim: int, n_actions: int, latent_size: int = 32, hidden_size: int = 64,
                 support_size: int = 20, zero_heads: bool = True):  # fmt: skip
        super().__init__()
        self.obs_dim, self.n_actions, self.support_size = obs_dim, n_actions, support_size
        bins = 2 * support_size + 1
        self.representation = _mlp([obs_dim, hidden_size, hidden_size, latent_size])
        self.dynamics_trunk = nn.Sequential(_mlp([latent_size + n_actions, hidden_size, hidden_size]), nn.ELU())
        self.dynamics_state = nn.Linear(hidden_size, latent_size)
        self.reward_head = nn.Linear(hidden_size, bins)
        self.prediction_trunk = nn.Sequential(_mlp([latent_size, hidden_size, hidden_size]), nn.ELU())
        self.policy_head = nn.Linear(hidden_size, n_actions)
        self.value_head = nn.Linear(hidden_size, bins)
        # EfficientZero's self-supervised consistency: a projection of each state, and a predictor that maps an
        # unrolled state's projection onto the projection of the real observation it stands for.
        self.projection = _mlp([latent_size, hidden_size, hidden_size])
        self.projection_predictor = _mlp([hidden_size, hidden_size, hidden_size])
        if zero_heads:  # A fresh model predicts 0 reward and value instead of noise that the search would trust.
            for head in (self.reward_head, self.value_head, self.policy_head):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def represent(self, observations: torch.Tensor) -> torch.Tensor:
        return scale_hidden(self.representation(observations.flatten(1)))

    def dynamics(self, hidden: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hidden, actions)`` -> ``(next hidden, reward logits)``."""
        one_hot = nn.functional.one_hot(actions.long(), self.n_actions).to(hidden.dtype)
        trunk = self.dynamics_trunk(torch.cat([hidden, one_hot], -1))
        return scale_hidden(self.dynamics_state(trunk)), self.reward_head(trunk)

    def predict(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``hidden`` -> ``(policy logits, value logits)``."""
        trunk = self.prediction_trunk(hidden)
        return self.policy_head(trunk), self.value_head(trunk)

    def project(self, hidden: torch.Tensor, predictor: bool) -> torch.Tensor:
        """The consistency loss's view of a state (through the predictor on the unrolled side)."""
        projection = self.projection(hidden)
        return self.projection_predictor(projection) if predictor else projection

    @torch.no_grad()
    def initial_inference(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Observations -> ``(hidden, value, policy logits)`` with scalar values (for the search)."""
        hidden = self.represent(observations)
        policy, value = self.predict(hidden)
        return hidden, from_support(value, self.support_size), policy

    @torch.no_grad()
    def recurrent_inference(self, hidden: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(hidden, actions)`` -> ``(next hidden, reward, value, policy logits)`` with scalar reward and value."""
        hidden, reward = self.dynamics(hidden, actions)
        policy, value = self.predict(hidden)
        return hidden, from_support(reward, self.support_size), from_support(value, self.support_size), policy


class NetworkSearchModel:
    """Adapts :class:`MuZeroNetwork` to :class:`~dream_envs.planning.mcts.SearchModel`: numpy in and out, hidden
    states kept as tensors on the network's device.

    :param network: the MuZero networks
    :param device: the device the network lives on

    Example::

        import numpy as np
        import torch
        from dream_envs.agents.muzero import MuZeroNetwork, NetworkSearchModel
        from dream_envs.planning import BatchedMCTS

        model = NetworkSearchModel(MuZeroNetwork(obs_dim=4, n_actions=2, latent_size=8), torch.device("cpu"))
        print(BatchedMCTS(n_actions=2, num_simulations=5, seed=0).search(model, np.zeros((3, 4))).visit_counts)
    """

    def __init__(self, network: MuZeroNetwork, device: torch.device):
        self.network, self.device = network, device

    def initial_inference(self, observations: np.ndarray) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        obs = torch.as_tensor(np.ascontiguousarray(observations, np.float32), device=self.device)
        hidden, value, policy = self.network.initial_inference(obs)
        return hidden, value.cpu().numpy(), policy.cpu().numpy()

    def recurrent_inference(self, hidden: torch.Tensor, actions: np.ndarray) -> tuple[Any, ...]:
        hidden, reward, value, policy = self.network.recurrent_inference(
            hidden, torch.as_tensor(actions, device=self.device))
        return hidden, reward.cpu().numpy(), value.cpu().numpy(), policy.cpu().numpy()
