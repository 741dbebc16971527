"""C: a linear controller on ``[z, h]``, trained with CMA-ES entirely inside the dream.

Every CMA-ES generation plays ``popsize x episodes`` dream episodes as ONE batch: one M forward pass per dream
step covers every episode of every candidate (the candidates' weights are stacked, so acting is one ``bmm``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cma
import numpy as np
import torch
from gymnasium import spaces

from dream_envs.agents.world_models.latent_dream import LatentDream
from dream_envs.checks import check_int, check_number
from dream_envs.device import generator_device
from dream_envs.spaces import check_action_space

__all__ = ["CMAResult", "LinearController", "dream_returns", "train_controller"]


class LinearController:
    """``a = W [z, h] + b``: argmax over ``n`` outputs for Discrete(n) actions; for a Box, ``tanh`` squashed into
    the bounds (dimensions without finite bounds keep the raw output).

    Parameters live outside, as flat vectors (what CMA-ES searches): ``P`` candidates are a ``P x num_params``
    tensor and act together.

    :param feature_size: ``Z + H``
    :param action_space: the real env's action space (Discrete or Box)

    Example::

        import torch
        from gymnasium import spaces
        from dream_envs.agents.world_models import LinearController

        controller = LinearController(feature_size=6, action_space=spaces.Box(-2.0, 2.0, (1,)))
        params = torch.randn(4, controller.num_params)  # 4 candidates
        actions = controller.act(torch.randn(4, 10, 6), params)  # 10 inputs each
        print(actions.shape, float(actions.abs().max()) <= 2.0)  # (4, 10, 1) True
    """

    def __init__(self, feature_size: int, action_space: spaces.Space):
        self.feature_size, self.action_space = check_int("feature_size", feature_size), check_action_space(action_space)
        discrete = isinstance(self.action_space, spaces.Discrete)
        self.n_outputs = int(self.action_space.n) if discrete else int(np.prod(self.action_space.shape))
        self.num_params = self.feature_size * self.n_outputs + self.n_outputs
        if not discrete:
            low = torch.as_tensor(self.action_space.low.reshape(-1), dtype=torch.float32)
            high = torch.as_tensor(self.action_space.high.reshape(-1), dtype=torch.float32)
            self._bounded = torch.isfinite(low) & torch.isfinite(high)
            self._low = torch.where(self._bounded, low, -torch.ones_like(low))
            self._high = torch.where(self._bounded, high, torch.ones_like(high))

    def act(self, features: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``features`` ``P x N x F``, ``params`` ``P x num_params`` -> env actions: ``P x N`` longs (Discrete) or
        ``P x N x *shape`` floats (Box)."""
        n_candidates = params.shape[0]
        weight = params[:, : -self.n_outputs].reshape(n_candidates, self.feature_size, self.n_outputs)  # (P, F, O)
        bias = params[:, -self.n_outputs :].unsqueeze(1)  # (P, 1, O)
        out = torch.baddbmm(bias, features, weight)  # (P, N, O)
        if isinstance(self.action_space, spaces.Discrete):
            return out.argmax(dim=-1) + int(self.action_space.start)
        low, high, bounded = (x.to(out.device) for x in (self._low, self._high, self._bounded))
        squashed = low + (torch.tanh(out) + 1.0) * 0.5 * (high - low)
        return torch.where(bounded, squashed, out).reshape(*out.shape[:2], *self.action_space.shape)


class CMAResult(NamedTuple):
    """What :func:`train_controller` found: the chosen parameters, their dream return on fresh dream episodes,
    which of the two finalists won (``"best"`` candidate or CMA-ES ``"mean"``) and each generation's
    ``(best, mean)`` dream return.

    Example::

        import numpy as np
        import torch
        from gymnasium import spaces
        from dream_envs.agents.world_models import MDNRNN, LatentDream, LinearController, train_controller

        dream = LatentDream(MDNRNN(2, 2, hidden_size=4, seed=0), torch.zeros(1, 2), spaces.Discrete(2))
        controller = LinearController(dream.feature_size, dream.action_space)
        result = train_controller(dream, controller, generations=2, popsize=4, episodes=2, max_steps=5,
                                  rng=np.random.default_rng(0), final_episodes=4)
        print(result.chosen, result.dream_return, len(result.history))
    """

    params: np.ndarray
    dream_return: float
    dream_length: float
    chosen: str
    history: list[tuple[float, float]]


@torch.no_grad()
def dream_returns(dream: LatentDream, controller: LinearController, params: torch.Tensor, episodes: int,
                  max_steps: int, generator: torch.Generator | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Returns and lengths (each ``P x episodes``) of every candidate's dream episodes, played as one batch.

    The candidates share starting latents and sampling noise (common random numbers): their differences in
    return come from their actions, not from luckier draws.
    """
    n_candidates, z_size, device = params.shape[0], dream.model.latent_size, dream.model.device
    batch = n_candidates * episodes
    start = dream.sample_starts(episodes, generator)
    state = dream.reset(batch, start_index=start.repeat(n_candidates))  # row p * episodes + e
    params = params.to(device)
    alive = torch.ones(batch, dtype=torch.bool, device=device)
    total, length = torch.zeros(batch, device=device), torch.zeros(batch, device=device)
    # The noise is drawn where the generator lives (the model's device for train_controller's) and used on the model's
    # device: a CPU draw added to CUDA latents would fail.
    draw_on = generator_device(generator, device)
    for _ in range(max_steps):
        actions = controller.act(state.features().view(n_candidates, episodes, -1), params)  # (P, E, ...)
        uniform = torch.rand(episodes, z_size, generator=generator, device=draw_on).to(device)  # (E, Z)
        normal = torch.randn(episodes, z_size, generator=generator, device=draw_on).to(device)
        uniform, normal = uniform.repeat(n_candidates, 1), normal.repeat(n_candidates, 1)  # (P E, Z)
        state, reward, terminated = dream.step(state, actions.flatten(0, 1), uniform, normal)
        total += reward * alive
        length += alive
        alive &= ~terminated
        if not alive.any():
            break
    return total.view(n_candidates, episodes), length.view(n_candidates, episodes)


def train_controller(dream: LatentDream, controller: LinearController, generations: int, popsize: int = 32,
                     episodes: int = 8, max_steps: int = 500, sigma0: float = 0.5, x0: np.ndarray | None = None,
                     rng: np.random.Generator | None = None, final_episodes: int = 64,
                     final_dream: LatentDream | None = None) -> CMAResult:  # fmt: skip
    """CMA-ES on the controller's parameters, every candidate scored by its mean return over ``episodes`` dream
    episodes (all candidates in one batch per dream step).

    The best candidate ever seen is a noisy maximum; the CMA-ES mean (``xfavorite``) is often better. Both play
    ``final_episodes`` fresh dream episodes and the higher mean return wins.

    :param rng: drives CMA-ES's sampling and the dream's noise (a private generator on the dream model's device;
        global state is untouched)
    :param final_dream: where the two finalists play (default: ``dream``), e.g. the dream from first frames only
        when CMA-ES also started dream episodes mid-episode
    """
    generations, popsize = check_int("generations", generations), check_int("popsize", popsize, 2)
    episodes, max_steps = check_int("episodes", episodes), check_int("max_steps", max_steps)
    final_episodes = check_int("final_episodes", final_episodes)
    sigma0 = check_number("sigma0", sigma0, 0.0, math.inf, low_open=True, high_open=True)
    rng = rng if rng is not None else np.random.default_rng()
    generator = torch.Generator(device=dream.model.device).manual_seed(int(rng.integers(2**62)))
    x0 = np.zeros(controller.num_params) if x0 is None else np.asarray(x0, np.float64)
    options = {"popsize": popsize, "seed": np.nan, "randn": lambda *shape: rng.standard_normal(shape),
               "verbose": -9, "verb_disp": 0, "verb_log": 0}  # fmt: skip
    strategy = cma.CMAEvolutionStrategy(x0, sigma0, options)
    best_params, best_return, history = x0, -np.inf, []
    for _ in range(generations):
        candidates = np.asarray(strategy.ask())  # (P, D)
        returns, _ = dream_returns(dream, controller, torch.as_tensor(candidates, dtype=torch.float32), episodes,
                                   max_steps, generator)  # fmt: skip
        mean_returns = returns.mean(dim=1).cpu().numpy().astype(np.float64)
        strategy.tell(list(candidates), list(-mean_returns))  # CMA-ES minimises
        if mean_returns.max() > best_return:
            best_return, best_params = float(mean_returns.max()), candidates[int(mean_returns.argmax())]
        history.append((float(mean_returns.max()), float(mean_returns.mean())))
    finalists = np.stack([best_params, np.asarray(strategy.result.xfavorite)])
    returns, lengths = dream_returns(final_dream or dream, controller, torch.as_tensor(finalists, dtype=torch.float32),
                                     final_episodes, max_steps, generator)  # fmt: skip
    chosen = int(returns.mean(dim=1).argmax())
    return CMAResult(finalists[chosen].astype(np.float32), float(returns[chosen].mean()),
                     float(lengths[chosen].mean()), ("best", "mean")[chosen], history)  # fmt: skip
