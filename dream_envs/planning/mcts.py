"""Monte-Carlo tree search in a learned model (MuZero's search), run for many trees at once.

Every simulation descends all trees together (pUCT over numpy arrays shaped ``(trees, actions)``), then expands one
leaf per tree with ONE batched call of the model, then backs the values up all trees together. The Python work per
simulation grows with the tree depth, not with the number of trees, so several envs' searches share each network
call.

A model that returns a NaN or +-inf value or reward makes that edge's value unknown: unknown edges never move the
min-max bounds, rank below every known or unvisited sibling in pUCT, and leave their ancestors' statistics as they
were (the simulation is not backed up past the unknown edge), so one broken leaf does not poison a whole root action.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from dream_envs.checks import check_bool, check_int, check_number, check_probability

__all__ = ["BatchedMCTS", "SearchResult"]  # SearchModel is a typing.Protocol: a type to implement, not a class


class SearchModel(Protocol):
    """What the search needs from a model: MuZero's two inference functions, on batches.

    ``hidden`` is whatever the model uses as a state (a torch tensor or a numpy array, batch first); values,
    rewards and policy logits come back as numpy arrays.

    Example::

        import numpy as np
        from dream_envs.planning import BatchedMCTS

        class Walk:  # a known model: the hidden state is the position, action 1 steps right and pays 1
            def initial_inference(self, observations):
                return np.asarray(observations, float), np.zeros(len(observations)), np.zeros((len(observations), 2))

            def recurrent_inference(self, hidden, actions):
                n = len(actions)
                return hidden + actions[:, None], actions.astype(float), np.zeros(n), np.zeros((n, 2))

        print(BatchedMCTS(2, num_simulations=8, seed=0).search(Walk(), np.zeros((1, 1))).visit_counts)
    """

    def initial_inference(self, observations: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
        """``observations (B, ...)`` -> ``(hidden (B, ...), value (B,), policy_logits (B, A))``."""

    def recurrent_inference(self, hidden: Any, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
        """``hidden (B, ...), actions (B,)`` -> ``(next hidden, reward (B,), value (B,), policy_logits (B, A))``."""


@dataclass
class SearchResult:
    """The roots' statistics after a search.

    :param visit_counts: ``(B, A)`` visits of each root action
    :param root_values: ``(B,)`` the search's value estimate of each root (visit-weighted mean Q of its root
        actions whose value is finite; NaN if none is)
    :param root_prior: ``(B, A)`` the network's policy at the root (before exploration noise)

    Example::

        import numpy as np
        from dream_envs.planning import SearchResult

        result = SearchResult(np.array([[3.0, 1.0]]), np.array([0.5]), np.array([[0.5, 0.5]]))
        print(result.policy)  # [[0.75 0.25]]: MuZero's policy target
    """

    visit_counts: np.ndarray
    root_values: np.ndarray
    root_prior: np.ndarray

    @property
    def policy(self) -> np.ndarray:
        """Visit counts normalised to a distribution per root (MuZero's policy target)."""
        return self.visit_counts / np.maximum(self.visit_counts.sum(-1, keepdims=True), 1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


class BatchedMCTS:
    """MuZero's MCTS: pUCT selection with min-max normalised values, Dirichlet noise at the root, rewards on the
    edges, discounted backups, for ``B`` independent trees searched together.

    :param n_actions: size of the Discrete action space
    :param num_simulations: simulations per search (each adds one node to every tree)
    :param discount: discount of rewards and values along a path
    :param pb_c_base: pUCT's ``c2``
    :param pb_c_init: pUCT's ``c1``
    :param dirichlet_alpha: concentration of the root noise
    :param exploration_fraction: weight of the root noise in the root prior
    :param seed: seeds the root noise and the random tie-breaking (none in a ``deterministic`` search)

    Example::

        import numpy as np
        from dream_envs.planning import BatchedMCTS

        class Bandit:  # one step: action 1 pays 1, action 0 pays 0, then nothing
            def initial_inference(self, obs):
                return np.zeros((len(obs), 1)), np.zeros(len(obs)), np.zeros((len(obs), 2))

            def recurrent_inference(self, hidden, actions):
                first = hidden[:, 0] == 0
                return hidden + 1, np.where(first, actions, 0.0), np.zeros(len(actions)), np.zeros((len(actions), 2))

        result = BatchedMCTS(n_actions=2, num_simulations=10, seed=0).search(Bandit(), np.zeros((3, 4)))
        print(result.visit_counts.argmax(-1))  # [1 1 1]
    """

    def __init__(self, n_actions: int, num_simulations: int = 25, discount: float = 0.997, pb_c_base: float = 19652,
                 pb_c_init: float = 1.25, dirichlet_alpha: float = 0.25, exploration_fraction: float = 0.25,
                 seed: int | None = None):  # fmt: skip
        n_actions = check_int("n_actions", n_actions, minimum=2)
        num_simulations = check_int("num_simulations", num_simulations)
        discount = check_number("discount", discount, 0.0, 1.0, low_open=True)
        pb_c_base = check_number("pb_c_base", pb_c_base, 0.0, math.inf, low_open=True, high_open=True)
        pb_c_init = check_number("pb_c_init", pb_c_init, 0.0, math.inf, high_open=True)
        dirichlet_alpha = check_number("dirichlet_alpha", dirichlet_alpha, 0.0, math.inf, low_open=True,
                                       high_open=True)  # fmt: skip
        exploration_fraction = check_probability("exploration_fraction", exploration_fraction)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        self.n_actions, self.num_simulations, self.discount = n_actions, num_simulations, discount
        self.pb_c_base, self.pb_c_init = pb_c_base, pb_c_init
        self.dirichlet_alpha, self.exploration_fraction = dirichlet_alpha, exploration_fraction
        self.rng = np.random.default_rng(seed)

    def search(self, model: SearchModel, observations: np.ndarray, add_noise: bool = False,
               deterministic: bool = False) -> SearchResult:  # fmt: skip
        """Search from each observation's root.

        :param model: the model to search in
        :param observations: ``(B, ...)``, one tree per observation
        :param add_noise: mix Dirichlet noise into the root priors (self-play exploration)
        :param deterministic: draw no random number: pUCT ties go to the higher prior, then the lower action, so the
            same model and observation always give the same tree, whatever else is in the batch and whatever was
            searched before (for acting with ``deterministic=True``)
        :raises ValueError: for ``add_noise`` and ``deterministic`` together
        """
        add_noise, deterministic = check_bool("add_noise", add_noise), check_bool("deterministic", deterministic)
        if add_noise and deterministic:
            raise ValueError("add_noise=True draws random root noise, so the search cannot be deterministic=True")
        select = functools.partial(self._select, deterministic=True) if deterministic else self._select
        hidden0, value0, logits0 = model.initial_inference(observations)
        n_trees, n_nodes, n_actions = len(value0), self.num_simulations + 1, self.n_actions
        trees = np.arange(n_trees)
        # Node 0 is the root; edges (node, action) carry the statistics. child == -1: not expanded yet.
        child = np.full((n_trees, n_nodes, n_actions), -1, np.int64)
        visits = np.zeros((n_trees, n_nodes, n_actions))
        value_sum = np.zeros((n_trees, n_nodes, n_actions))
        edge_reward = np.zeros((n_trees, n_nodes, n_actions))
        prior = np.zeros((n_trees, n_nodes, n_actions))
        hidden = _NodeStore(hidden0, n_nodes)
        root_prior = _softmax(np.asarray(logits0, np.float64))
        prior[:, 0] = root_prior
        if add_noise and self.exploration_fraction > 0:
            noise = self.rng.dirichlet([self.dirichlet_alpha] * n_actions, size=n_trees)
            prior[:, 0] = (1 - self.exploration_fraction) * root_prior + self.exploration_fraction * noise
        q_min, q_max = np.full(n_trees, np.inf), np.full(n_trees, -np.inf)

        for simulation in range(self.num_simulations):
            node = np.zeros(n_trees, np.int64)
            path_nodes, path_actions = [], []
            depth = np.zeros(n_trees, np.int64)
            leaf_parent, leaf_action = np.zeros(n_trees, np.int64), np.zeros(n_trees, np.int64)
            searching = np.ones(n_trees, bool)
            while True:
                action = select(visits[trees, node], value_sum[trees, node], prior[trees, node], q_min, q_max,
                                node > 0)  # fmt: skip
                path_nodes.append(node)
                path_actions.append(action)
                nxt = child[trees, node, action]
                reached = searching & (nxt < 0)
                leaf_parent[reached], leaf_action[reached] = node[reached], action[reached]
                depth[reached] = len(path_actions)
                searching &= nxt >= 0
                if not searching.any():
                    break
                node = np.where(searching, nxt, node)

            new_hidden, reward, value, logits = model.recurrent_inference(hidden.get(leaf_parent), leaf_action)
            new = simulation + 1
            child[trees, leaf_parent, leaf_action] = new
            edge_reward[trees, leaf_parent, leaf_action] = reward
            hidden.put(new, new_hidden)
            prior[:, new] = _softmax(np.asarray(logits, np.float64))

            backed_up = np.asarray(value, np.float64)
            for level in range(len(path_actions) - 1, -1, -1):
                # A non-finite return marks the edge it reached as unknown (its value sum stays NaN/inf) and stops
                # there: the ancestors keep the statistics of their finite simulations.
                on_path = (level < depth) & ((level == depth - 1) | np.isfinite(backed_up))
                at, act = path_nodes[level], path_actions[level]
                backed_up = np.where(on_path, edge_reward[trees, at, act] + self.discount * backed_up, backed_up)
                value_sum[trees, at, act] += np.where(on_path, backed_up, 0.0)
                visits[trees, at, act] += on_path
                q = value_sum[trees, at, act] / np.maximum(visits[trees, at, act], 1)
                bounded = on_path & np.isfinite(q)  # unknown values never stretch the min-max bounds
                q_min = np.where(bounded, np.minimum(q_min, q), q_min)
                q_max = np.where(bounded, np.maximum(q_max, q), q_max)

        root_visits = visits[:, 0]
        known = np.isfinite(value_sum[:, 0])
        with np.errstate(invalid="ignore", divide="ignore"):  # no known root action: NaN, not a made-up value
            root_values = np.where(known, value_sum[:, 0], 0.0).sum(-1) / np.where(known, root_visits, 0.0).sum(-1)
        return SearchResult(root_visits, root_values, root_prior)

    def _select(self, visits: np.ndarray, value_sum: np.ndarray, prior: np.ndarray, q_min: np.ndarray,
                q_max: np.ndarray, inner: np.ndarray, deterministic: bool = False) -> np.ndarray:  # fmt: skip
        """pUCT over each tree's current node: ``(trees, actions)`` statistics -> one action per tree; ties (scores
        within 1e-9) are broken at random, or with ``deterministic`` by the higher prior, then the lower action."""
        # A node below the root was visited once when it was expanded (MuZero's pseudocode counts that visit), so
        # its first selection already follows the prior instead of a coin flip.
        parent_visits = visits.sum(-1, keepdims=True) + inner[:, None]
        visited = visits > 0
        q = np.where(visited, value_sum / np.maximum(visits, 1), 0.0)
        unknown = ~np.isfinite(q)  # a NaN or +-inf value (a broken model): ranked below every other child
        q = np.where(unknown, 0.0, q)
        spread = (q_max - q_min)[:, None]
        # Min-max normalisation over the values seen in this tree, so pUCT's constants fit any reward scale.
        normalised = np.where(visited & (spread > 0), (q - q_min[:, None]) / np.where(spread > 0, spread, 1), 0.0)
        pb_c = np.log((parent_visits + self.pb_c_base + 1) / self.pb_c_base) + self.pb_c_init
        score = normalised + prior * np.sqrt(parent_visits) / (1 + visits) * pb_c
        # Known scores are >= 0; an unknown value (or a NaN prior) puts the child below all of them, never first.
        score = np.where(unknown | ~np.isfinite(score), -1.0, score)
        if deterministic:
            # The same width of tie as the random break below, so only which of the tied children is taken differs.
            tied = score >= score.max(-1, keepdims=True) - 1e-9
            return _argmax_ties_by(tied, prior)
        # Ties (an unvisited node's children all score 0) are broken at random, not towards action 0.
        score += self.rng.random(score.shape) * 1e-9
        return score.argmax(-1)

    @staticmethod
    def action_from_visits(visit_counts: np.ndarray, temperature: float, rng: np.random.Generator,
                           tie_break: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Sample actions from visit counts sharpened by ``1 / temperature``; 0 gives the most visited action.

        :param tie_break: ``(B, A)`` scores (the root prior, say) that decide between equally visited actions at
            temperature 0, before the lower action; None: the lower action
        """
        if temperature == 0:
            most = visit_counts >= visit_counts.max(-1, keepdims=True)
            return most.argmax(-1) if tie_break is None else _argmax_ties_by(most, tie_break)
        logits = np.log(np.maximum(visit_counts, 1e-12)) / temperature
        probabilities = _softmax(logits)
        cumulative = probabilities.cumsum(-1)
        draws = rng.random((len(visit_counts), 1))
        return np.minimum((draws > cumulative).sum(-1), visit_counts.shape[-1] - 1)


def _argmax_ties_by(candidates: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Per row, the candidate (``True`` entries of ``candidates``) with the highest ``key``, the lowest index among
    equal keys; a NaN key ranks below every number."""
    key = np.where(np.isnan(key), -np.inf, key)  # argmax would take the first NaN
    best = np.where(candidates, key, -np.inf).max(-1, keepdims=True)
    return (candidates & (key >= best)).argmax(-1)  # the first True: the lowest index


class _NodeStore:
    """The hidden states of all trees' nodes, in one array of the model's own kind (torch tensor or numpy)."""

    def __init__(self, root: Any, n_nodes: int):
        self.torch = isinstance(root, torch.Tensor)
        shape = (root.shape[0], n_nodes, *root.shape[1:])
        if self.torch:
            self.data = torch.zeros(shape, dtype=root.dtype, device=root.device)
            self.trees = torch.arange(root.shape[0], device=root.device)
        else:
            root = np.asarray(root)
            self.data = np.zeros(shape, root.dtype)
            self.trees = np.arange(root.shape[0])
        self.data[:, 0] = root

    def put(self, node: int, value: Any) -> None:
        self.data[:, node] = value if self.torch else np.asarray(value)

    def get(self, nodes: np.ndarray) -> Any:
        if self.torch:
            return self.data[self.trees, torch.as_tensor(nodes, device=self.data.device)]
        return self.data[self.trees, nodes]
