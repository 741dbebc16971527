"""Trajectory optimisers over action sequences: CEM, iCEM and MPPI for Box actions, categorical CEM for Discrete ones.

Each keeps a distribution over ``horizon``-step sequences; ``optimize(objective)`` samples a population, scores it
with ``objective`` (``population x horizon [x act_dim] -> population`` returns, one batched call) and refines;
``shift()`` moves the distribution one step forward for the next real step (receding horizon, warm start).

Returns that are NaN or +-inf (a diverged model, a reward_fn that breaks on the model's predictions) are unknown, not
good: every optimiser ranks them last, refits only to finite ones and gives them no MPPI weight. An iteration in
which no candidate has a finite return raises :class:`NonFiniteObjectiveError` (see there why it is not skipped).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch
from gymnasium import spaces

from dream_envs.checks import check_int, check_number, check_probability
from dream_envs.device import resolve_device

__all__ = [
    "CEM",
    "ICEM",
    "MPPI",
    "OPTIMIZERS",
    "CategoricalCEM",
    "NonFiniteObjectiveError",
    "TrajectoryOptimizer",
    "colored_noise",
]

Objective = Callable[[torch.Tensor], torch.Tensor]


class NonFiniteObjectiveError(RuntimeError):
    """Every candidate of an optimiser's iteration scored NaN or +-inf: there is nothing to rank, so no plan.

    Raised by ``optimize`` of every optimiser, and passed on unchanged by :meth:`MPCPlanner.plan
    <dream_envs.planning.MPCPlanner.plan>` and the MPC agent. It is raised rather than falling back to the warm
    start because a whole population of non-finite returns means the objective itself is broken (a model that
    diverged or was fed NaN, a reward_fn, termination_fn or terminal_value that fails on the model's predictions),
    and then it breaks at every later step too: a fallback would let an agent act blind for the rest of a long
    episode and fill its buffer with those actions, while a warning is shown once per place by Python's default
    filter and then stays silent. A caller who prefers to act on anyway can catch it and take any action.

    Example::

        import torch
        from gymnasium import spaces
        from dream_envs.planning import CEM, NonFiniteObjectiveError

        cem = CEM(spaces.Box(-1, 1, (1,)), horizon=3, population=8, iterations=1)
        try:
            cem.optimize(lambda a: torch.full((len(a),), torch.nan), torch.Generator().manual_seed(0))
        except NonFiniteObjectiveError as error:
            print(error)  # CEM: all 8 candidate returns of iteration 1/1 are non-finite (8 NaN, ...
    """


def _rank_finite(
    returns: torch.Tensor, optimizer: TrajectoryOptimizer, iteration: int, n_candidates: int
) -> tuple[torch.Tensor, int]:
    """``returns`` with every NaN and +-inf replaced by -inf (last in ``topk``, weight 0 in a softmax), and how many
    are finite; raises :class:`NonFiniteObjectiveError` when none is, and a ``ValueError`` when the objective did not
    return one number per candidate."""
    if not isinstance(returns, torch.Tensor) or returns.shape != (n_candidates,):
        is_tensor = isinstance(returns, torch.Tensor)
        got = f"a tensor of shape {tuple(returns.shape)}" if is_tensor else type(returns).__name__
        raise ValueError(f"{type(optimizer).__name__}: the objective must return a torch tensor of shape "
                         f"({n_candidates},), one return per candidate sequence; got {got}")  # fmt: skip
    finite = torch.isfinite(returns)
    n_finite = int(finite.sum())
    if n_finite == 0:
        nan, plus_inf = int(returns.isnan().sum()), int((returns == np.inf).sum())
        raise NonFiniteObjectiveError(
            f"{type(optimizer).__name__}: all {returns.numel()} candidate returns of iteration {iteration + 1}/"
            f"{optimizer.iterations} are non-finite ({nan} NaN, {plus_inf} +inf, "
            f"{returns.numel() - nan - plus_inf} -inf), so no plan can be ranked. The objective is broken: check the "
            f"model's fit (holdout loss, NaN weights or inputs) and the reward_fn, termination_fn and terminal_value "
            f"on the model's predictions."
        )
    return torch.where(finite, returns, -np.inf), n_finite


class TrajectoryOptimizer(ABC):
    """Shared set-up: the action space, horizon, population and iterations; ``reset()`` forgets the warm start.

    :param action_space: Box or Discrete
    :param horizon: steps per planned sequence
    :param population: candidate sequences per iteration
    :param iterations: refinement rounds per real step
    :param device: where the sequences live (the model's device): a torch device, ``"cpu"``, ``"cuda"`` or
        ``"auto"``
    :raises ValueError: for a size that is not a positive integer, or a device torch does not know

    Example::

        import torch
        from gymnasium import spaces
        from dream_envs.planning import CEM

        cem = CEM(spaces.Box(-1, 1, (1,)), horizon=5, population=64, iterations=3)
        best = cem.optimize(lambda a: -(a - 0.5).pow(2).sum((1, 2)), torch.Generator().manual_seed(0))
        print(best[0])  # close to 0.5: the first action of the plan
    """

    def __init__(self, action_space: spaces.Space, horizon: int, population: int, iterations: int,
                 device: torch.device | str = "cpu"):  # fmt: skip
        horizon, population, iterations, device = _check_settings(horizon, population, iterations, device)
        self.action_space, self.horizon = action_space, horizon
        self.population, self.iterations = population, iterations
        self.device = device
        self.reset()

    @abstractmethod
    def reset(self) -> None:
        """Forget the warm start (a new episode)."""

    @abstractmethod
    def optimize(self, objective: Objective, generator: torch.Generator) -> torch.Tensor:
        """The planned sequence (``horizon [x act_dim]``); its first action is the one to take. Non-finite returns
        rank last; :class:`NonFiniteObjectiveError` if an iteration has no finite one."""

    @abstractmethod
    def shift(self) -> None:
        """After acting: drop the first step of the distribution and append a fresh last step."""


def _check_settings(horizon: object, population: object, iterations: object,
                    device: object) -> tuple[int, int, int, torch.device]:  # fmt: skip
    """The sizes as ints and the device resolved, or a ``ValueError`` (``TypeError`` for a device of another kind)
    naming the offending one, before any tensor is made from them."""
    sizes = [check_int(name, value) for name, value in
             (("horizon", horizon), ("population", population), ("iterations", iterations))]  # fmt: skip
    return sizes[0], sizes[1], sizes[2], resolve_device(device)


class _Gaussian(TrajectoryOptimizer):
    def __init__(self, action_space: spaces.Box, horizon: int, population: int, iterations: int,
                 device: torch.device | str, init_std: float, std_name: str = "init_std"):  # fmt: skip
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"{type(self).__name__} plans Box actions; got {action_space}. Use CategoricalCEM.")
        if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
            raise ValueError(f"{type(self).__name__} samples actions between the bounds of the action space, and "
                             f"{action_space} has infinite ones (its sequences would be NaN); give the action space "
                             f"finite bounds (a gymnasium.ActionWrapper with a bounded action_space)")  # fmt: skip
        self.init_std = check_number(f"{std_name} (a fraction of the action range's half width)", init_std, 0.0,
                                     math.inf, low_open=True, high_open=True)  # fmt: skip
        horizon, population, iterations, device = _check_settings(horizon, population, iterations, device)
        self.low = torch.as_tensor(action_space.low, dtype=torch.float32, device=device).reshape(-1)
        self.high = torch.as_tensor(action_space.high, dtype=torch.float32, device=device).reshape(-1)
        super().__init__(action_space, horizon, population, iterations, device)

    def reset(self) -> None:
        self.mean = ((self.low + self.high) / 2).expand(self.horizon, -1).clone()
        self.std = (self.init_std * (self.high - self.low) / 2).expand(self.horizon, -1).clone()

    def shift(self) -> None:
        self.mean = torch.cat([self.mean[1:], ((self.low + self.high) / 2).reshape(1, -1)])
        self.std = (self.init_std * (self.high - self.low) / 2).expand(self.horizon, -1).clone()

    def _sample(self, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn((self.population, *self.mean.shape), device=self.device, generator=generator)
        return torch.maximum(torch.minimum(self.mean + self.std * noise, self.high), self.low)


class CEM(_Gaussian):
    """Cross-entropy method (PETS): sample Gaussian sequences, refit mean and std to the best ``elite_fraction``.

    Only candidates with finite returns can be elites: with fewer finite ones than elites, the refit uses those. The
    std of a single elite is 0, which would shrink the search to a point on the strength of one sample; with only
    one elite the std is kept instead (and only the mean moves), which also planned closer to a known quadratic
    optimum (squared error of the plan 3.5 against 4.6, mean of 50 seeds, population 10, so one elite).

    :param action_space: a Box action space (actions are clipped to its bounds)
    :param horizon: steps per planned sequence
    :param population: sequences per iteration
    :param iterations: refinement rounds per real step
    :param elite_fraction: share of the population refitted to
    :param alpha: smoothing, ``new = alpha * old + (1 - alpha) * elite statistics``
    :param init_std: initial std as a fraction of the half range
    :param device: the model's device

    Example::

        import torch
        from gymnasium import spaces
        from dream_envs.planning import CEM

        cem = CEM(spaces.Box(-2, 2, (1,)), horizon=4, population=100, iterations=4)
        plan = cem.optimize(lambda a: -(a - 1.0).abs().sum((1, 2)), torch.Generator().manual_seed(0))
        print(plan.squeeze(-1))  # near 1.0 everywhere
    """

    def __init__(self, action_space: spaces.Box, horizon: int = 15, population: int = 400, iterations: int = 5,
                 elite_fraction: float = 0.1, alpha: float = 0.1, init_std: float = 0.5,
                 device: torch.device | str = "cpu"):  # fmt: skip
        elite_fraction = check_probability("elite_fraction", elite_fraction, zero=False)
        alpha = check_probability("alpha", alpha, one=False)
        population = check_int("population", population)
        self.n_elites, self.alpha = max(1, int(round(elite_fraction * population))), alpha
        super().__init__(action_space, horizon, population, iterations, device, init_std)

    def optimize(self, objective: Objective, generator: torch.Generator) -> torch.Tensor:
        for iteration in range(self.iterations):
            actions = self._sample(generator)
            returns, n_finite = _rank_finite(objective(actions), self, iteration, len(actions))
            self._refit(actions[returns.topk(min(self.n_elites, n_finite)).indices])  # best first, all finite
        return self.mean.clone()

    def _refit(self, elites: torch.Tensor) -> None:
        self.mean = self.alpha * self.mean + (1 - self.alpha) * elites.mean(0)
        spread = elites.std(0, unbiased=False) if len(elites) > 1 else self.std  # one elite: no spread to measure
        self.std = self.alpha * self.std + (1 - self.alpha) * spread


def colored_noise(beta: float, shape: tuple[int, ...], horizon: int, generator: torch.Generator,
                  device: torch.device | str = "cpu") -> torch.Tensor:  # fmt: skip
    """Gaussian noise ``shape x horizon`` with power spectrum ``1 / f**beta`` along the last axis and unit variance
    (beta 0: white; 1: pink; 2: red, smoother action sequences), as iCEM samples its candidates."""
    freqs = torch.fft.rfftfreq(horizon, device=device)
    freqs[0] = 1.0 / horizon  # the mean's component, as Timmer & Koenig's method does
    scale = freqs ** (-beta / 2.0)
    real = torch.randn((*shape, len(freqs)), device=device, generator=generator) * scale
    imag = torch.randn((*shape, len(freqs)), device=device, generator=generator) * scale
    imag[..., 0] = 0.0
    real[..., 0] *= 2**0.5
    weights = scale[1:].clone()
    if horizon % 2 == 0:  # the Nyquist component is real
        imag[..., -1] = 0.0
        real[..., -1] *= 2**0.5
        weights[-1] /= 2**0.5
    sigma = 2 * torch.sqrt((weights**2).sum()) / horizon
    return torch.fft.irfft(torch.complex(real, imag), n=horizon) / sigma


class ICEM(CEM):
    """iCEM (Pinneri et al. 2020): CEM whose candidates use colored (temporally correlated) noise, and that keeps
    a share of the previous iteration's elites in the next population (shifted forward at the next real step).

    :param action_space: a Box action space
    :param horizon: steps per planned sequence
    :param population: sequences per iteration
    :param iterations: refinement rounds per real step
    :param elite_fraction: share of the population refitted to
    :param alpha: smoothing of the mean and std
    :param init_std: initial std as a fraction of the half range
    :param noise_beta: colour of the sampling noise (0 white, 2 red)
    :param keep_elites: share of the elites carried into the next iteration's population
    :param device: the model's device

    Example::

        import torch
        from gymnasium import spaces
        from dream_envs.planning import ICEM

        icem = ICEM(spaces.Box(-2, 2, (1,)), horizon=6, population=100, iterations=4)
        plan = icem.optimize(lambda a: -(a - 1.0).abs().sum((1, 2)), torch.Generator().manual_seed(0))
        print(plan.squeeze(-1))  # near 1.0 everywhere
    """

    def __init__(self, action_space: spaces.Box, horizon: int = 15, population: int = 400, iterations: int = 5,
                 elite_fraction: float = 0.1, alpha: float = 0.1, init_std: float = 0.5, noise_beta: float = 2.0,
                 keep_elites: float = 0.3, device: torch.device | str = "cpu"):  # fmt: skip
        self.keep_elites = check_probability("keep_elites", keep_elites)
        self.noise_beta = check_number("noise_beta", noise_beta, 0.0, math.inf, high_open=True)
        super().__init__(action_space, horizon, population, iterations, elite_fraction, alpha, init_std, device)

    def reset(self) -> None:
        super().reset()
        self.kept: torch.Tensor | None = None

    def shift(self) -> None:
        super().shift()
        if self.kept is not None:  # yesterday's elites, one step on, their last action repeated
            self.kept = torch.cat([self.kept[:, 1:], self.kept[:, -1:]], dim=1)

    def _sample(self, generator: torch.Generator) -> torch.Tensor:
        act_dim = self.mean.shape[-1]
        noise = colored_noise(self.noise_beta, (self.population, act_dim), self.horizon, generator, self.device)
        actions = self.mean + self.std * noise.transpose(1, 2)
        if self.kept is not None:
            actions = torch.cat([actions[: self.population - len(self.kept)], self.kept])
        return torch.maximum(torch.minimum(actions, self.high), self.low)

    def _refit(self, elites: torch.Tensor) -> None:
        super()._refit(elites)
        keep = int(round(self.keep_elites * self.n_elites))
        self.kept = elites[:keep].clone() if keep else None


class MPPI(_Gaussian):
    """Model-predictive path integral control: the new mean is the softmax(return / temperature)-weighted average
    of the sampled sequences; the sampling std stays fixed. Sequences with non-finite returns get weight 0.

    :param action_space: a Box action space
    :param horizon: steps per planned sequence
    :param population: sequences per iteration
    :param iterations: refinement rounds per real step
    :param temperature: lambda of the exponential weights (lower: greedier)
    :param noise_std: sampling std as a fraction of the half range
    :param device: the model's device

    Example::

        import torch
        from gymnasium import spaces
        from dream_envs.planning import MPPI

        mppi = MPPI(spaces.Box(-1, 1, (2,)), horizon=3, population=200, iterations=3, temperature=0.1)
        plan = mppi.optimize(lambda a: -(a - 0.3).pow(2).sum((1, 2)), torch.Generator().manual_seed(0))
        print(plan)  # around 0.3
    """

    def __init__(self, action_space: spaces.Box, horizon: int = 15, population: int = 400, iterations: int = 1,
                 temperature: float = 1.0, noise_std: float = 0.5, device: torch.device | str = "cpu"):  # fmt: skip
        self.temperature = check_number("temperature", temperature, 0.0, math.inf, low_open=True, high_open=True)
        super().__init__(action_space, horizon, population, iterations, device, noise_std, "noise_std")

    def optimize(self, objective: Objective, generator: torch.Generator) -> torch.Tensor:
        for iteration in range(self.iterations):
            actions = self._sample(generator)
            # Non-finite returns become -inf: weight exactly 0.
            returns, _ = _rank_finite(objective(actions), self, iteration, len(actions))
            weights = torch.softmax((returns - returns.max()) / self.temperature, dim=0)
            self.mean = torch.einsum("n,n...->...", weights, actions)
        return self.mean.clone()


class CategoricalCEM(TrajectoryOptimizer):
    """Cross-entropy method for Discrete actions: one categorical distribution per step, refitted to the elites'
    action frequencies. With ``iterations=1`` it is random shooting (uniform sequences, the best one kept). The plan
    is the best sequence seen over all iterations; non-finite returns are never best and never elites.

    :param action_space: a Discrete action space
    :param horizon: steps per planned sequence
    :param population: sequences per iteration
    :param iterations: refinement rounds per real step
    :param elite_fraction: share of the population refitted to
    :param alpha: smoothing, ``new = alpha * old + (1 - alpha) * elite frequencies``
    :param min_probability: floor of every action's probability, so exploration never stops
    :param device: the model's device

    Example::

        import torch
        from gymnasium import spaces
        from dream_envs.planning import CategoricalCEM

        cem = CategoricalCEM(spaces.Discrete(3), horizon=4, population=100, iterations=3)
        plan = cem.optimize(lambda a: (a == 2).float().sum(1), torch.Generator().manual_seed(0))
        print(plan)  # tensor([2, 2, 2, 2])
    """

    def __init__(self, action_space: spaces.Discrete, horizon: int = 15, population: int = 400, iterations: int = 5,
                 elite_fraction: float = 0.1, alpha: float = 0.1, min_probability: float = 0.01,
                 device: torch.device | str = "cpu"):  # fmt: skip
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"CategoricalCEM plans Discrete actions; got {action_space}. Use CEM or MPPI.")
        elite_fraction = check_probability("elite_fraction", elite_fraction, zero=False)
        alpha = check_probability("alpha", alpha, one=False)
        min_probability = check_probability("min_probability", min_probability, one=False)
        population = check_int("population", population)
        self.n, self.start = int(action_space.n), int(action_space.start)
        self.n_elites = max(1, int(round(elite_fraction * population)))
        self.alpha, self.min_probability = alpha, min_probability
        super().__init__(action_space, horizon, population, iterations, device)

    def reset(self) -> None:
        self.probs = torch.full((self.horizon, self.n), 1.0 / self.n, device=self.device)

    def shift(self) -> None:
        self.probs = torch.cat([self.probs[1:], torch.full((1, self.n), 1.0 / self.n, device=self.device)])

    def optimize(self, objective: Objective, generator: torch.Generator) -> torch.Tensor:
        best, best_return = None, -np.inf
        for iteration in range(self.iterations):
            flat = torch.multinomial(self.probs, self.population, replacement=True, generator=generator)  # (H, N)
            actions = flat.T + self.start  # (N, H)
            returns, n_finite = _rank_finite(objective(actions), self, iteration, len(actions))
            top = returns.topk(min(self.n_elites, n_finite))  # all finite
            if float(top.values[0]) > best_return:  # finite, so the first iteration always sets best
                best, best_return = actions[top.indices[0]].clone(), float(top.values[0])
            counts = torch.nn.functional.one_hot(flat.T[top.indices], self.n).float().mean(0)  # (H, n)
            probs = self.alpha * self.probs + (1 - self.alpha) * counts
            probs = probs.clamp_min(self.min_probability)
            self.probs = probs / probs.sum(-1, keepdim=True)
        return best


OPTIMIZERS = {"cem": CEM, "icem": ICEM, "mppi": MPPI, "categorical-cem": CategoricalCEM}
