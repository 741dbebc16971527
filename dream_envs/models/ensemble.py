"""EnsembleDynamics: E probabilistic MLPs in one batched network, predicting next-obs delta and reward."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from dream_envs.buffer import TransitionBuffer
from dream_envs.checks import check_bool, check_int, seeded_generator
from dream_envs.device import resolve_device
from dream_envs.io import ModelFileError, load_torch_file, save_torch_file
from dream_envs.models.calibration import DEFAULT_HORIZON, DEFAULT_TOLERANCE, CutoffCalibration
from dream_envs.models.task_functions import TaskFn, task_fn_action
from dream_envs.models.training import FitResult, fit_ensemble
from dream_envs.spaces import (
    action_input_dim,
    check_action_space,
    check_actions,
    check_observation_space,
    check_observations,
    encode_action,
    obs_dim,
    space_from_dict,
    space_to_dict,
    spaces_equal,
)

__all__ = ["EnsembleDynamics", "EnsembleConfig", "EnsemblePrediction", "ModelStep", "FitResult"]

FORMAT = "dream-envs/ensemble"
FORMAT_VERSION = 3
# Version 1 files hold weights that still work, but their "auto" threshold was in other units (one-step error
# quantiles of normalised deltas) and they may lack the reward range: they load with a warning. Versions 1 and 2
# predate ``termination_input``: their termination head is a column of the trunk ("obs_action").
_READABLE_VERSIONS = (1, 2, 3)

TERMINATION_INPUTS = ("next_obs", "obs_action")
# Hidden widths of the next-observation termination classifier: in a one-off measurement (a classifier alone, on
# 250-1,500 random-action steps) F1 within 0.04 of 200 x 200 on CartPole and Hopper; with it, an imagined step of the
# default model took about 9% longer.
TERMINATION_HIDDEN = (64, 64)
# Inference buffers kept (one per layer and shape): a few batch shapes' worth.
_MAX_BUFFERS = 32


@dataclass(frozen=True)
class EnsembleConfig:
    """Architecture of an :class:`EnsembleDynamics` (stored in its file), checked on construction.

    :param ensemble_size: number of members ``E``
    :param num_elites: members used for predictions, ``1 <= num_elites <= ensemble_size``
    :param hidden_sizes: hidden layer widths of every member
    :param probabilistic: Gaussian (mean, log-variance) heads rather than deterministic ones
    :param learn_termination: add a termination-logit head
    :param termination_input: what the termination head reads: ``"obs_action"`` (a column of the dynamics trunk,
        the default, and what files saved before format version 3 hold) or ``"next_obs"`` (a classifier of the next
        observation)

    Example::

        from dream_envs import EnsembleConfig

        config = EnsembleConfig(ensemble_size=5, num_elites=3, hidden_sizes=(64, 64))
        print(config)
    """

    ensemble_size: int = 7
    num_elites: int = 5
    hidden_sizes: tuple[int, ...] = (200, 200, 200)
    probabilistic: bool = True
    learn_termination: bool = True
    termination_input: str = "obs_action"

    def __post_init__(self) -> None:
        size = check_int("ensemble_size", self.ensemble_size)
        elites = check_int(f"num_elites (ensemble_size={size})", self.num_elites, maximum=size)
        try:
            sizes = tuple(check_int("a hidden size", h) for h in self.hidden_sizes)
        except (TypeError, ValueError):
            sizes = ()
        if not sizes or isinstance(self.hidden_sizes, (str, bytes)):
            raise ValueError(
                f"hidden_sizes must be a non-empty sequence of positive integers, got {self.hidden_sizes!r}"
            )
        for name, value in (("ensemble_size", size), ("num_elites", elites), ("hidden_sizes", sizes)):
            object.__setattr__(self, name, value)
        for name in ("probabilistic", "learn_termination"):
            object.__setattr__(self, name, check_bool(name, getattr(self, name)))
        if not isinstance(self.termination_input, str) or self.termination_input not in TERMINATION_INPUTS:
            raise ValueError(f"termination_input must be one of {TERMINATION_INPUTS}, got {self.termination_input!r}")


class EnsemblePrediction(NamedTuple):
    """Per-member predictions in the env's units; shapes ``E x B x ...`` (from :meth:`EnsembleDynamics.predict`).

    Example::

        import gymnasium as gym
        from dream_envs import EnsembleDynamics

        env = gym.make("CartPole-v1")
        model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=3, num_elites=2, seed=0)
        prediction = model.predict([env.observation_space.sample()], [0])
        print(prediction.delta_mean.shape)  # torch.Size([3, 1, 4])
    """

    delta_mean: torch.Tensor  # (E, B, obs_dim)
    delta_var: torch.Tensor  # (E, B, obs_dim); zeros for a deterministic model
    reward_mean: torch.Tensor  # (E, B)
    reward_var: torch.Tensor  # (E, B)
    # (E, B), > 0: terminal (the decision the dream takes; "next_obs" heads read each member's own predicted mean
    # next observation); None if not learned
    termination_logit: torch.Tensor | None


class ModelStep(NamedTuple):
    """One imagined step for ``B`` rows (from :meth:`EnsembleDynamics.step`).

    Example::

        import gymnasium as gym
        from dream_envs import EnsembleDynamics

        env = gym.make("Pendulum-v1")
        model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=3, num_elites=2, seed=0)
        step = model.step([[1.0, 0.0, 0.0]], [[0.5]])
        print(step.next_obs, step.reward, step.terminated, step.disagreement)
    """

    next_obs: torch.Tensor  # (B, obs_dim)
    reward: torch.Tensor  # (B,)
    terminated: torch.Tensor | None  # (B,) bool from the learned head, None when not learned
    # (B,) ensemble disagreement of this step (EnsembleDynamics.disagreement); None from the library's inner loops
    # that asked the step without it
    disagreement: torch.Tensor | None


class _EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied with one batched matmul: ``(E, B, in) -> (E, B, out)``."""

    def __init__(self, ensemble_size: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, out_features))

    def reset_parameters(self, generator: torch.Generator) -> None:
        # Truncated-normal init scaled by fan-in, as in PETS/MBPO.
        std = 1.0 / (2.0 * math.sqrt(self.weight.shape[1]))
        with torch.no_grad():
            self.weight.normal_(0.0, std, generator=generator).clamp_(-2 * std, 2 * std)
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleDynamics(nn.Module):
    """An ensemble model of an environment: ``(obs, action) -> (next_obs - obs, reward[, termination])``.

    All ``ensemble_size`` members live in one batched network (weights ``E x in x out``), so one forward pass
    evaluates every member on every row. Probabilistic members predict a mean and a bounded log-variance
    (Gaussian NLL); ``probabilistic=False`` trains plain MSE. Inputs and outputs are normalised with
    statistics stored alongside the weights. :meth:`fit` trains each member on its own bootstrap resample with a
    holdout split, per-member early stopping, and picks the ``num_elites`` best members.

    :param observation_space: the real env's observation space (float ``Box``, flattened internally)
    :param action_space: the real env's action space (``Discrete`` one-hot encoded, or ``Box``)
    :param ensemble_size: number of members ``E``
    :param num_elites: members used to sample predictions (lowest holdout error)
    :param hidden_sizes: widths of the hidden layers of every member
    :param probabilistic: Gaussian mean/log-variance heads (``True``) or deterministic MSE heads
    :param learn_termination: add a termination-logit head trained on the ``terminated`` flags
    :param termination_input: what that head reads. ``"obs_action"`` (default): a column of the dynamics trunk's
        head, reading the current observation and action (what files saved before format version 3 hold).
        ``"next_obs"``: a classifier of the next observation, an ensemble of its own (one member per dynamics member,
        2 hidden layers of 64), trained on the real next observations and asked, in the dream, about the predicted
        one. Termination is mostly a property of the state reached (a pole past its angle, a torso below its
        height), which this head learns from fewer terminal rows: on random-action data its F1 was higher or equal
        in 14 of 15 cells (5 envs, 250 to 1,500 steps; CartPole 0.66 against 0.39 at 250, Hopper 0.50 against
        0.16), at about 9% more time per imagined step (docs/termination.md). It is not the default: in SAC/PPO/DQN +
        DynaCallback runs it solved no faster (InvertedPendulum, CartPole, Acrobot; MountainCarContinuous seeds 0
        and 1 end as with the trunk column on the same code, 3,000 real steps and unsolved), and CartPole DQN stayed
        solved on no seed of 5 (docs/benchmarks.md)
    :param env_id: id of the real env, stored in the file for checks and rendering
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"`` ...
    :param seed: seeds the weight initialisation (and :meth:`fit` when it gets no seed of its own)

    Example::

        import gymnasium as gym
        from dream_envs import EnsembleDynamics, TransitionBuffer

        env = gym.make("CartPole-v1")
        buffer = TransitionBuffer.from_env(env).collect(env, n_steps=2000, seed=0)
        model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=5, num_elites=3,
                                 hidden_sizes=(64, 64), env_id="CartPole-v1", seed=0)
        result = model.fit(buffer, max_epochs=5, seed=0)
        step = model.step(buffer.transitions().obs[:8], buffer.transitions().action[:8])
        print(step.next_obs.shape, step.disagreement.shape)  # torch.Size([8, 4]) torch.Size([8])
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        ensemble_size: int = 7,
        num_elites: int = 5,
        hidden_sizes: tuple[int, ...] = (200, 200, 200),
        probabilistic: bool = True,
        learn_termination: bool = True,
        termination_input: str = "obs_action",
        env_id: str | None = None,
        device: str | torch.device = "auto",
        seed: int | None = None,
    ):
        super().__init__()
        self.observation_space = check_observation_space(observation_space)
        self.action_space = check_action_space(action_space)
        if isinstance(hidden_sizes, int) or not hasattr(hidden_sizes, "__iter__"):
            raise ValueError(f"hidden_sizes must be a non-empty sequence of positive integers, got {hidden_sizes!r}")
        self.config = EnsembleConfig(ensemble_size, num_elites, tuple(hidden_sizes), probabilistic, learn_termination,
                                     termination_input)  # fmt: skip
        ensemble_size, num_elites = self.config.ensemble_size, self.config.num_elites  # plain ints
        self.env_id = env_id
        self.seed = seed
        self.obs_dim = obs_dim(self.observation_space)
        self.in_dim = self.obs_dim + action_input_dim(self.action_space)
        self.out_dim = self.obs_dim + 1  # delta obs, reward
        E = ensemble_size

        widths = [self.in_dim, *self.config.hidden_sizes]
        self.hidden = nn.ModuleList(_EnsembleLinear(E, a, b) for a, b in zip(widths[:-1], widths[1:]))
        in_trunk = self.config.learn_termination and self.config.termination_input == "obs_action"
        head_width = self.out_dim * (2 if probabilistic else 1) + (1 if in_trunk else 0)
        self.head = _EnsembleLinear(E, widths[-1], head_width)
        self.termination_net: nn.ModuleList | None = None
        if self.config.learn_termination and not in_trunk:
            widths = [self.obs_dim, *TERMINATION_HIDDEN, 1]
            self.termination_net = nn.ModuleList(_EnsembleLinear(E, a, b) for a, b in zip(widths[:-1], widths[1:]))
        # Soft bounds on the log-variance (PETS): learned, so the NLL cannot push variances to 0 or infinity.
        self.max_logvar = nn.Parameter(torch.full((1, 1, self.out_dim), 0.5))
        self.min_logvar = nn.Parameter(torch.full((1, 1, self.out_dim), -10.0))

        self.register_buffer("in_mean", torch.zeros(self.in_dim))
        self.register_buffer("in_std", torch.ones(self.in_dim))
        self.register_buffer("out_mean", torch.zeros(self.out_dim))
        # The spread of each output (delta obs, reward) in the fit data; 0 where it never changed, which the model
        # then predicts exactly (its mean).
        self.register_buffer("out_std", torch.ones(self.out_dim))
        self.register_buffer("elite_idx", torch.arange(num_elites))
        self.register_buffer("auto_threshold", torch.tensor(float("nan")))
        self.register_buffer("fitted", torch.tensor(False))
        # Whether the fit data held a terminal transition: without one the termination head has nothing to learn
        # from, and its output (whatever an untrained head says) is never used.
        self.register_buffer("termination_seen", torch.tensor(False))
        # Half of log(w_terminal / w_other), the shift the class-balanced termination loss puts into the logit:
        # subtracted before the head's decision (logit adjustment, Menon et al. 2021; see fit).
        self.register_buffer("termination_logit_offset", torch.tensor(0.0))
        self.start_states: torch.Tensor | None = None
        # Rewards seen in training; imagined rewards are clipped to them so an off-distribution state cannot
        # hand the agent an absurd reward (None: no clipping, as in files saved before it was recorded).
        self.reward_range: tuple[float, float] | None = None
        # The same for the real steps that went on and for those that terminated, each None without such a step (or
        # in files saved before they were recorded): an imagined step's reward stays within what real steps of its
        # kind paid, so a goal's bonus paid on the terminal step (MountainCar's +100) is paid where the termination
        # head ends a dream episode, and never bleeds into the steps around it.
        self.nonterminal_reward_range: tuple[float, float] | None = None
        self.terminal_reward_range: tuple[float, float] | None = None
        # Per observation dimension, the smallest and largest value seen in the fit data (obs and next_obs):
        # the dream is never clamped to a declared bound that real data crossed. ``(obs_dim,)`` arrays, or None.
        self.observed_obs_range: tuple[np.ndarray, np.ndarray] | None = None
        self.cutoff_calibration: CutoffCalibration | None = None
        self._warned_out_of_bounds: set[int] = set()
        self._inference_buffers: dict[tuple[int, int, int, int], torch.Tensor] = {}

        # Without a seed, fresh OS entropy: never torch.seed(), which would reseed the user's global generator.
        generator = seeded_generator(seed)
        for layer in (*self.hidden, self.head, *(self.termination_net or ())):
            layer.reset_parameters(generator)
        self.device = resolve_device(device)
        self.to(self.device)

    # ------------------------------------------------------------------ forward passes
    def _trunk(self, x: torch.Tensor, reuse_buffers: bool = False, members: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(E, B, in)`` normalised -> raw head output ``(E, B, head_width)``; with ``members`` (``M``
        member indices) ``x`` is ``(M, B, in)`` and only those members run: ``(M, B, head_width)``.

        Without autograd the activations run in place, and with ``reuse_buffers`` every layer writes into a
        buffer kept from the previous call of the same shape: large dream batches then cost their matmuls,
        not fresh allocations (measured in benchmarks/dream_throughput.py). Outputs in reused buffers are
        overwritten by the next such call, so callers copy what they keep.
        """
        in_place = not torch.is_grad_enabled()
        h = x
        for index, layer in enumerate((*self.hidden, self.head)):
            if members is None and not reuse_buffers:
                h = layer(h)
            else:
                weight, bias = layer.weight, layer.bias
                if members is not None:
                    weight, bias = weight[members], bias[members]
                out = self._buffer(index, h.shape[0], h.shape[1], bias.shape[2]) if reuse_buffers else None
                h = torch.baddbmm(bias, h, weight, out=out)
            if index < len(self.hidden):
                h = nn.functional.silu(h, inplace=in_place)
        return h

    def _buffer(self, index: int, members: int, batch: int, width: int) -> torch.Tensor:
        # Kept per shape: a planner alternates two batch sizes (look-ahead and rollout) and would otherwise
        # allocate both at every call. A few shapes at most live at once; past that the old ones go.
        key = (index, members, batch, width)
        buffer = self._inference_buffers.get(key)
        if buffer is None or buffer.device != self.device:
            if len(self._inference_buffers) >= _MAX_BUFFERS:
                self._inference_buffers.clear()
            buffer = self._inference_buffers[key] = torch.empty((members, batch, width), device=self.device)
        return buffer

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Raw head output ``(..., head_width)`` -> normalised mean, bounded log-variance ``(..., out)``, and the
        trunk's termination logit (None unless the head reads ``"obs_action"``)."""
        mean = out[..., : self.out_dim]
        in_trunk = self.config.learn_termination and self.termination_net is None
        logit = out[..., -1] if in_trunk else None
        if self.config.probabilistic:
            logvar = out[..., self.out_dim : 2 * self.out_dim]
            max_logvar, min_logvar = self.max_logvar.reshape(-1), self.min_logvar.reshape(-1)  # (out,)
            logvar = max_logvar - nn.functional.softplus(max_logvar - logvar)
            logvar = min_logvar + nn.functional.softplus(logvar - min_logvar)
        else:
            logvar = torch.full_like(mean, -math.inf)
        return mean, logvar, logit

    def _termination_logits(self, next_obs: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """The next-observation head: raw next observations ``(E, B, obs_dim)``, row block ``e`` for member ``e``
        -> raw logits ``(E, B)`` (before the offset :meth:`_terminated` takes off). Normalised like the
        observations the trunk reads. With ``members`` (``M`` indices) only those run: ``(M, B, obs_dim)`` ->
        ``(M, B)``."""
        h = (next_obs - self.in_mean[: self.obs_dim]) / self.in_std[: self.obs_dim]
        layers = self.termination_net
        for index, layer in enumerate(layers):
            if members is None:
                h = layer(h)
            else:
                h = torch.baddbmm(layer.bias[members], h, layer.weight[members])
            if index < len(layers) - 1:
                h = nn.functional.silu(h)
        return h.squeeze(-1)

    def _forward_normalized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``x``: ``(E, B, in)`` normalised -> normalised mean and log-variance ``(E, B, out)``, logit ``(E, B)``."""
        return self._split(self._trunk(x))

    def _inputs(self, obs: Any, action: Any) -> torch.Tensor:
        """Normalised network input ``(B, in)`` from raw obs ``(B, *obs_shape)`` and raw actions."""
        obs = _as_tensor(obs, self.device, torch.float32)
        obs = obs.reshape(obs.shape[0], self.obs_dim)
        action = _as_tensor(action, self.device)
        x = torch.cat([obs, encode_action(self.action_space, action.reshape(obs.shape[0], -1))], dim=-1)
        return (x - self.in_mean) / self.in_std

    def _checked(self, obs: Any, action: Any) -> tuple[Any, Any]:
        """``obs`` as ``(B, obs_dim)`` and ``B`` actions checked against the spaces, with errors that name them
        (values included, except on a CUDA device, where reading them would wait for it). The library's own inner
        loops call :meth:`_step` with tensors they made."""
        obs = check_observations(self.observation_space, obs)
        if len(obs) == 0:
            raise ValueError("obs is an empty batch: give at least one observation")
        return obs, check_actions(self.action_space, action, len(obs))

    @torch.no_grad()
    def predict(self, obs: Any, action: Any) -> EnsemblePrediction:
        """Every member's prediction for a batch, in the env's units.

        :param obs: ``B x obs_dim`` observations (numpy or torch)
        :param action: ``B`` discrete actions or ``B x act_dim`` continuous actions
        :raises ValueError: for observations or actions that do not fit the spaces (shape, range, NaN)
        """
        obs, action = self._checked(obs, action)
        obs = _as_tensor(obs, self.device, torch.float32).reshape(-1, self.obs_dim)
        x = self._inputs(obs, action)
        mean, logvar, logit = self._forward_normalized(x.unsqueeze(0).expand(self.config.ensemble_size, -1, -1))
        mean = mean * self.out_std + self.out_mean
        var = logvar.exp() * self.out_std**2
        if self.termination_net is not None:  # each member reads its own predicted mean next observation
            logit = self._termination_logits(obs + mean[..., : self.obs_dim])
        if logit is not None:  # the decision's own scale: -inf where the fit data held no termination
            logit = torch.where(self.termination_seen, logit - self.termination_logit_offset, -math.inf)
        return EnsemblePrediction(mean[..., :-1], var[..., :-1], mean[..., -1], var[..., -1], logit)

    @torch.no_grad()
    def step(
        self,
        obs: Any,
        action: Any,
        generator: torch.Generator | None = None,
        propagation: str = "ts1",
        deterministic: bool = False,
    ) -> ModelStep:
        """Imagine one step for a batch of rows with a single forward pass over all members.

        :param obs: ``B x obs_dim`` current observations (numpy or torch)
        :param action: ``B`` discrete or ``B x act_dim`` continuous actions
        :param generator: torch generator on the model's device for member choice and sampling
        :param propagation: ``"ts1"``: each row uses one elite member drawn at random (PETS TS-1);
            ``"mean"``: the mean of the elites; ``"single"``: the best elite (by holdout loss) alone
        :param deterministic: use predicted means instead of sampling the Gaussian heads
        :return: a :class:`ModelStep`; its rewards stay within the real rewards of the step's kind: a step the
            termination head ends pays what real terminal steps paid (:attr:`terminal_reward_range`), another what
            real steps that went on paid (:attr:`nonterminal_reward_range`)
        :raises ValueError: for observations or actions that do not fit the spaces (shape, range, NaN)
        """
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be None or a torch.Generator, got {generator!r}")
        return self._step(
            *self._checked(obs, action), generator, propagation, check_bool("deterministic", deterministic)
        )

    @torch.no_grad()
    def _step(
        self,
        obs: Any,
        action: Any,
        generator: torch.Generator | None,
        propagation: str,
        deterministic: bool,
        with_disagreement: bool = True,
    ) -> ModelStep:
        """:meth:`step` without its input checks: the library's inner loops (dreams, planners), on tensors they made
        with the right shapes. ``with_disagreement=False`` runs only the members the step uses (the elites; the
        best one for ``"single"``) and returns ``disagreement=None``: for callers that never read it."""
        if propagation not in ("ts1", "mean", "single"):  # before the forward pass it would waste
            raise ValueError(f"propagation must be 'ts1', 'mean' or 'single', got {propagation!r}")
        obs_t = _as_tensor(obs, self.device, torch.float32).reshape(-1, self.obs_dim)
        batch = obs_t.shape[0]
        x = self._inputs(obs_t, action)  # (B, in)
        elites = self.elite_idx
        # the disagreement is the spread of ALL members; without it only the members the step uses run
        members = None if with_disagreement else elites[:1] if propagation == "single" else elites
        ran = self.config.ensemble_size if members is None else len(members)
        raw = self._trunk(x.unsqueeze(0).expand(ran, -1, -1), reuse_buffers=True, members=members)  # (M, B, W)
        disagreement = self._disagreement(raw[..., : self.obs_dim]) if with_disagreement else None  # (B,)
        elite_rows = elites if members is None else torch.arange(ran, device=self.device)  # elite j's row of raw

        if propagation == "ts1":
            pick = elite_rows[torch.randint(len(elites), (batch,), device=self.device, generator=generator)]
            mean_b, logvar_b, logit_b = self._split(raw[pick, torch.arange(batch, device=self.device)])  # (B, out)
        elif propagation == "single":
            mean_b, logvar_b, logit_b = self._split(raw[elite_rows[0]])  # the best elite alone
        else:  # "mean" (checked above)
            mean, logvar, logit = self._split(raw[elite_rows])  # (n_elites, B, out)
            mean_b, logvar_b = mean.mean(0), logvar.exp().mean(0).log()
            logit_b = logit.mean(0) if logit is not None else None
        if self.config.probabilistic and not deterministic:
            noise = torch.randn(mean_b.shape, device=self.device, generator=generator)
            mean_b = mean_b + noise * (0.5 * logvar_b).exp()
        out = mean_b * self.out_std + self.out_mean  # (B, out)
        next_obs = obs_t + out[:, : self.obs_dim]
        if self.termination_net is not None:  # the members that made the step judge the observation it reached
            logits = self._termination_logits(next_obs.unsqueeze(0).expand(ran, -1, -1), members)
            if propagation == "ts1":
                logit_b = logits[pick, torch.arange(batch, device=self.device)]
            elif propagation == "single":
                logit_b = logits[elite_rows[0]]
            else:
                logit_b = logits[elite_rows].mean(0)
        terminated = self._terminated(logit_b)
        return ModelStep(next_obs, self._clip_reward(out[:, -1], terminated), terminated, disagreement)

    def _disagreement(self, normalized_delta_means: torch.Tensor) -> torch.Tensor:
        """Members' normalised delta means ``(E, B, obs_dim)`` -> their spread in standard deviations of each
        dimension's one-step change, worst dimension ``(B,)`` (see :meth:`disagreement`). A dimension that never
        changed in the fit data is predicted exactly and adds nothing."""
        changes = (self.out_std[: self.obs_dim] > 0).to(normalized_delta_means.dtype)  # (obs_dim,)
        return (normalized_delta_means.std(dim=0, unbiased=False) * changes).amax(dim=-1)

    def with_known_functions(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        next_obs: torch.Tensor,
        reward: torch.Tensor,
        terminated: torch.Tensor | None,
        reward_fn: TaskFn | None,
        termination_fn: TaskFn | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """An imagined step's reward and termination with the known functions in place of the learned ones: the
        reward from ``reward_fn``, the verdict from ``termination_fn``. Where only the termination is known, the
        learned reward, which the termination head's verdict clipped to its kind, is clipped again to the kind the
        known verdict gives it (:meth:`step`'s ranges), so a step the known function ends pays what real terminal
        steps paid even where the head let it go on.

        :param obs: ``B x obs_dim`` the step's observations (on the model's device)
        :param action: its raw actions, ``B`` or ``B x act_dim`` (the functions get a Discrete space's as ``B``, a
            Box's as ``B x *shape``, whatever the caller's layout)
        :param next_obs: ``B x obs_dim`` the observations it reached
        :param reward: ``B`` the learned rewards (:attr:`ModelStep.reward`)
        :param terminated: ``B`` the head's verdicts, or ``None`` where the model does not judge termination
        :param reward_fn: a known reward ``(obs, action, next_obs) -> B`` or ``None``
        :param termination_fn: a known termination ``(obs, action, next_obs) -> B`` bool, or ``None``
        :return: the rewards ``B`` and the verdicts (``B`` bool, ``None`` where neither the model nor a function
            judges)
        """
        if reward_fn is None and termination_fn is None:
            return reward, terminated
        action = task_fn_action(self.action_space, action)  # one layout, whichever loop made the actions
        if reward_fn is not None:
            reward = reward_fn(obs, action, next_obs)
        if termination_fn is not None:
            terminated = termination_fn(obs, action, next_obs)
            if reward_fn is None:
                reward = self._clip_reward(reward, terminated)
        return reward, terminated

    def _clip_reward(self, reward: torch.Tensor, terminated: torch.Tensor | None) -> torch.Tensor:
        """Imagined rewards (any shape) clipped to the real rewards of their kind: a step the termination head
        ends (``terminated``, the same shape) to :attr:`terminal_reward_range`, one it continues to
        :attr:`nonterminal_reward_range`; to :attr:`reward_range` where a kind's range is unknown or the model does
        not judge termination. A caller whose known termination function overrules the head clips again with its
        verdict: the reward moves to the nearest reward of that kind."""
        if self.reward_range is None:
            return reward
        if terminated is None:
            return reward.clamp(*self.reward_range)
        continuing = reward.clamp(*(self.nonterminal_reward_range or self.reward_range))
        ending = reward.clamp(*(self.terminal_reward_range or self.reward_range))
        return torch.where(terminated, ending, continuing)

    def _terminated(self, logit: torch.Tensor | None) -> torch.Tensor | None:
        """The termination head's raw logit -> terminated flags (never, if the fit data held no termination)."""
        if logit is None:
            return None
        return (logit > self.termination_logit_offset) & self.termination_seen

    def observation_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Where imagined observations are clamped: the declared observation space's bounds, except on the sides
        real data crossed (the fit data's :attr:`observed_obs_range`), which are left open. Many envs clip to their
        declared bounds themselves (Pendulum's and Acrobot's velocities), and a dream that does too is right there;
        one whose env declares bounds it does not keep is never clamped to them.

        :return: lower and upper bounds ``(obs_dim,)`` each, on the model's device (``-inf``/``inf`` where open)
        """
        low = self.observation_space.low.reshape(-1).astype(np.float32)
        high = self.observation_space.high.reshape(-1).astype(np.float32)
        if self.observed_obs_range is not None:
            seen_low, seen_high = self.observed_obs_range
            low = np.where(seen_low < low, -np.inf, low).astype(np.float32)
            high = np.where(seen_high > high, np.inf, high).astype(np.float32)
        return torch.as_tensor(low, device=self.device), torch.as_tensor(high, device=self.device)

    @property
    def uncertainty_window(self) -> int:
        """Steps over which the uncertainty cutoff accumulates the disagreement: the horizon its threshold was
        calibrated for (:attr:`cutoff_calibration`), 10 when there is none."""
        return DEFAULT_HORIZON if self.cutoff_calibration is None else int(self.cutoff_calibration.horizon)

    @property
    def obs_scale(self) -> torch.Tensor:
        """The real spread of each observation dimension: its standard deviation in the fit data (``obs_dim``).
        The cutoff's tolerance and ``dream-envs diagnose``'s errors are in these units."""
        return self.in_std[: self.obs_dim]

    @torch.no_grad()
    def disagreement(self, obs: Any, action: Any) -> torch.Tensor:
        """The ensemble disagreement of one step for a batch: the standard deviation over all members of their
        predicted next observations, in units of each dimension's one-step change (its standard deviation in the fit
        data), worst dimension. The uncertainty cutoff sums it over the last :attr:`uncertainty_window` steps of an
        imagined episode. Against the real 10-step error, these units ranked rollouts better than the dimensions'
        real spread on 3 of 16 env/trajectory sets, worse on 1, the same on the rest (docs/uncertainty.md).

        :param obs: ``B x obs_dim`` observations
        :param action: ``B`` discrete or ``B x act_dim`` continuous actions
        :return: ``B`` disagreements
        :raises ValueError: for observations or actions that do not fit the spaces (shape, range, NaN)
        """
        x = self._inputs(*self._checked(obs, action))
        raw = self._trunk(x.unsqueeze(0).expand(self.config.ensemble_size, -1, -1))
        return self._disagreement(raw[..., : self.obs_dim])

    @torch.no_grad()
    def step_members(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Member ``e`` imagines one step for its own rows only: the layout of particle-based planning, where
        every particle belongs to one member and a batched matmul per layer covers all of them.

        :param obs: ``E x B x obs_dim`` observations, row block ``e`` for member ``e``
        :param action: ``E x B`` discrete or ``E x B x act_dim`` continuous actions
        :param generator: torch generator for the Gaussian heads' samples
        :param deterministic: use predicted means instead of sampling
        :return: next observations ``E x B x obs_dim``, rewards ``E x B`` (within the real rewards of each step's
            kind, as in :meth:`step`), terminated ``E x B`` (None if not learned)
        """
        members, batch = obs.shape[0], obs.shape[1]
        if members != self.config.ensemble_size:
            raise ValueError(f"obs must have one row block per member ({self.config.ensemble_size}), got {members}")
        x = self._inputs(obs.reshape(members * batch, self.obs_dim), action.reshape(members * batch, -1))
        mean, logvar, logit = self._split(self._trunk(x.reshape(members, batch, -1), reuse_buffers=True))
        if self.config.probabilistic and not deterministic:
            mean = mean + torch.randn(mean.shape, device=self.device, generator=generator) * (0.5 * logvar).exp()
        out = mean * self.out_std + self.out_mean
        next_obs = obs + out[..., : self.obs_dim]
        if self.termination_net is not None:
            logit = self._termination_logits(next_obs)
        terminated = self._terminated(logit)
        return next_obs, self._clip_reward(out[..., -1], terminated), terminated

    # ------------------------------------------------------------------ training
    def fit(
        self,
        buffer: TransitionBuffer,
        max_epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 5e-5,
        holdout_ratio: float = 0.1,
        max_holdout: int = 5000,
        patience: int | None = None,
        bootstrap: bool = True,
        balance_termination: bool = True,
        seed: int | None = None,
        progress_bar: bool = False,
        uncertainty_tolerance: float = DEFAULT_TOLERANCE,
        uncertainty_horizon: int = DEFAULT_HORIZON,
    ) -> FitResult:
        """Train every member on ``buffer`` (one batched optimiser step updates all members), then calibrate the
        uncertainty cutoff.

        A refit continues from the model's current weights (a warm start; the normalisation statistics are
        recomputed from the training split, a fresh optimiser is made). Each member sees its own bootstrap
        resample. The holdout is made of whole segments of real trajectories (``uncertainty_horizon`` transitions
        each, found by :meth:`TransitionBuffer.segments`) where the data has them. After each epoch the holdout loss
        of every member is measured (MSE in normalised units, plus the termination head's loss); a member's best
        weights are kept, and training stops once no member improved by 1% for ``patience`` epochs. The elites are
        the members with the lowest final holdout loss.

        Then the model is rolled ``uncertainty_horizon`` steps along every held-out segment and
        ``uncertainty_threshold="auto"`` is placed where the disagreement best tells the rollouts whose error
        exceeds ``uncertainty_tolerance`` real standard deviations (:mod:`dream_envs.models.calibration`; the
        record is :attr:`cutoff_calibration`). The rewards and observations seen are recorded: imagined rewards stay
        within the real range, and the dream is never clamped to a declared observation bound that real data
        crossed (a ``UserWarning`` counts such values per dimension). Without a terminal transition in the data the
        termination head is never used (the model predicts no termination); with one, half of the shift that the
        class-balanced loss puts into the head's logit is undone before its decision (logit adjustment, Menon et al.
        2021): fewer invented terminations than the balanced decision, more recall than a fully undone one.

        :param buffer: real transitions with this model's spaces
        :param max_epochs: upper bound on passes over the training split; ``None``: sized by
            :func:`~dream_envs.models.fit_schedule` from the data (4,000 gradient steps from initialised weights,
            1,000 when the model continues from fitted ones, at least 5 epochs)
        :param batch_size: rows per member per gradient step; ``None``: ``clip(n_train // 16, 32, 256)``. Below 20
            transitions nothing is held out: no early stopping, and the whole budget runs
        :param learning_rate: AdamW learning rate
        :param weight_decay: decoupled weight decay (AdamW)
        :param holdout_ratio: fraction of rows held out for early stopping, elites and ``threshold="auto"``
        :param max_holdout: cap on held-out rows
        :param patience: epochs without improvement before stopping; ``None``: the epochs of 300 gradient steps, at
            least 5
        :param bootstrap: resample the training split with replacement per member
        :param balance_termination: class-balanced weights in the termination loss (terminal rows weighted up to
            50x, mean weight 1), so rare terminations are not learned away
        :param seed: seeds the split, the resamples and the batch order
        :param progress_bar: show a tqdm bar over epochs
        :param uncertainty_tolerance: the model error (real standard deviations, worst observation dimension) after
            ``uncertainty_horizon`` steps that the cutoff should catch
        :param uncertainty_horizon: model steps of the held-out rollouts the cutoff is calibrated on
        :return: a :class:`FitResult` with per-epoch train/holdout losses and the cutoff's calibration
        :raises ValueError: a buffer for other spaces, fewer than 2 transitions, or a bad argument (named)
        :raises ModelFitError: the fit diverged (no finite loss); the model is left as it was before the call
        """
        return fit_ensemble(
            self, buffer, max_epochs=max_epochs, batch_size=batch_size, learning_rate=learning_rate,
            weight_decay=weight_decay, holdout_ratio=holdout_ratio, max_holdout=max_holdout, patience=patience,
            bootstrap=bootstrap, balance_termination=balance_termination, seed=seed, progress_bar=progress_bar,
            uncertainty_tolerance=uncertainty_tolerance, uncertainty_horizon=uncertainty_horizon,
        )  # fmt: skip

    # ------------------------------------------------------------------ persistence
    def to_payload(self) -> dict[str, Any]:
        """Everything :meth:`from_payload` needs, as tensors and plain values (what :meth:`save` writes; agents
        embed it in their own files)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": {**asdict(self.config), "hidden_sizes": list(self.config.hidden_sizes)},
            "observation_space": space_to_dict(self.observation_space),
            "action_space": space_to_dict(self.action_space),
            "env_id": self.env_id,
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "start_states": None if self.start_states is None else self.start_states.detach().cpu(),
            **{name: None if getattr(self, name) is None else list(getattr(self, name)) for name in _REWARD_RANGES},
            "observed_obs_range": None
            if self.observed_obs_range is None
            else [torch.as_tensor(bound) for bound in self.observed_obs_range],
            "cutoff_calibration": None if self.cutoff_calibration is None else self.cutoff_calibration.as_dict(),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Save weights, normalisation, spaces and start states atomically (a failed write keeps the old file)."""
        return save_torch_file(path, self.to_payload())

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        observation_space: gym.spaces.Space | None = None,
        action_space: gym.spaces.Space | None = None,
        device: str | torch.device = "auto",
    ) -> EnsembleDynamics:
        """Load a model saved by :meth:`save` safely (``weights_only=True``).

        :param path: model file
        :param observation_space: if given, the file's observation space must equal it
        :param action_space: if given, the file's action space must equal it
        :param device: where to put the model
        :raises FileNotFoundError: no file at ``path``
        :raises ModelFileError: truncated, corrupted or foreign file, another format version, or other spaces
        """
        payload = load_torch_file(path, FORMAT, _READABLE_VERSIONS, "dream-envs model")
        return cls.from_payload(payload, observation_space, action_space, device, source=repr(str(path)))

    @classmethod
    def from_payload(
        cls,
        payload: dict[str, Any],
        observation_space: gym.spaces.Space | None = None,
        action_space: gym.spaces.Space | None = None,
        device: str | torch.device = "auto",
        source: str = "the payload",
    ) -> EnsembleDynamics:
        """Rebuild a model from :meth:`to_payload`'s dict, checking it; ``source`` names it in errors."""
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ModelFileError(f"{source} is not a dream-envs model (no format marker {FORMAT!r})")
        try:
            file_obs = space_from_dict(payload["observation_space"])
            file_act = space_from_dict(payload["action_space"])
            # Files before version 3 have no termination_input: their head is the trunk's column.
            header = {"termination_input": "obs_action", **payload["config"]}
            config = EnsembleConfig(**{**header, "hidden_sizes": tuple(header["hidden_sizes"])})
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise ModelFileError(f"{source} has a damaged header ({error!r})") from error
        for name, expected, found in (
            ("observation", observation_space, file_obs),
            ("action", action_space, file_act),
        ):
            if expected is not None and not spaces_equal(expected, found):
                raise ModelFileError(
                    f"{source} models an env with {name} space {found}, but {expected} was expected "
                    f"(model env_id: {payload.get('env_id')!r})"
                )
        model = cls(
            file_obs,
            file_act,
            ensemble_size=config.ensemble_size,
            num_elites=config.num_elites,
            hidden_sizes=config.hidden_sizes,
            probabilistic=config.probabilistic,
            learn_termination=config.learn_termination,
            termination_input=config.termination_input,
            env_id=payload.get("env_id"),
            device="cpu",
            seed=0,
        )
        state_dict = payload.get("state_dict")
        if not isinstance(state_dict, dict):
            raise ModelFileError(f"{source} has no weights (its 'state_dict' entry is missing or not a dict)")
        _check_finite_weights(state_dict, source)
        version = payload.get("format_version", FORMAT_VERSION)
        if version == 1 and isinstance(state_dict, dict):
            # Version 1 used every termination head it had and did not adjust its logit.
            state_dict = {
                **state_dict,
                "termination_seen": torch.tensor(config.learn_termination),
                "termination_logit_offset": torch.tensor(0.0),
                "auto_threshold": torch.tensor(math.nan),
            }
            warnings.warn(
                f"{source} was saved by an earlier dream-envs (format version 1): its weights load, but its "
                "uncertainty_threshold='auto' was measured in other units and is dropped. Refit the model (or pass "
                "a number as uncertainty_threshold) to use the uncertainty cutoff.",
                stacklevel=3,
            )
        try:
            model.load_state_dict(state_dict)
        except (KeyError, RuntimeError, TypeError, AttributeError) as error:
            raise ModelFileError(f"{source} holds weights that do not fit its own header ({error})") from error
        starts = payload.get("start_states")
        if starts is not None and (
            not isinstance(starts, torch.Tensor)
            or starts.ndim != 2
            or starts.shape[0] == 0
            or starts.shape[1] != model.obs_dim
            or not starts.is_floating_point()
        ):
            shape = tuple(starts.shape) if isinstance(starts, torch.Tensor) else type(starts).__name__
            raise ModelFileError(f"{source} holds start states of shape {shape}: a fit writes (K >= 1, "
                                 f"{model.obs_dim}) float observations")  # fmt: skip
        if starts is not None and not bool(torch.isfinite(starts).all()):
            raise ModelFileError(f"{source} holds NaN/inf start states")
        model.start_states = starts
        try:
            for name in _REWARD_RANGES:
                bounds = payload.get(name)  # None, or absent from files saved before it was recorded
                setattr(model, name, None if bounds is None else (float(bounds[0]), float(bounds[1])))
            obs_range = payload.get("observed_obs_range")
            model.observed_obs_range = None if obs_range is None else _obs_range(obs_range, model.obs_dim)
            calibration = payload.get("cutoff_calibration")
            model.cutoff_calibration = None if calibration is None else CutoffCalibration(**calibration)
            _check_header_values(model)
        except (TypeError, ValueError, IndexError) as error:
            raise ModelFileError(
                f"{source} has a damaged reward range, observation range, elites or calibration ({error})"
            ) from error
        model.device = resolve_device(device)
        return model.to(model.device).eval()


# the real rewards' (low, high) a fit records, all steps and each kind: saved, loaded and checked alike
_REWARD_RANGES = ("reward_range", "nonterminal_reward_range", "terminal_reward_range")


def _check_finite_weights(state_dict: dict[str, Any], source: str) -> None:
    """Every float tensor of a saved model must be finite: a NaN weight would turn every dream into NaN. The one
    exception is ``auto_threshold``, where NaN means "not calibrated"."""
    for name, value in state_dict.items():
        if name == "auto_threshold" or not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            raise ModelFileError(
                f"{source} holds {bad} NaN/inf value(s) in its tensor {name!r} "
                f"(of {value.numel()}); the file is damaged or was saved from a diverged fit"
            )


def _check_header_values(model: EnsembleDynamics) -> None:
    """The values a loaded file sets beside the weights must be what a fit writes: a NaN lowest reward would hand
    NaN to the agent, an elite index out of range would fail at the first step, a negative threshold cut everything."""
    for name in _REWARD_RANGES:
        bounds = getattr(model, name)
        if bounds is not None and not (math.isfinite(bounds[0]) and bounds[0] <= bounds[1] < math.inf):
            raise ValueError(f"{name} must be two finite numbers, low <= high; got {bounds}")
    if model.observed_obs_range is not None:
        low, high = model.observed_obs_range
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (low <= high).all()):
            raise ValueError("observed_obs_range must hold finite bounds, low <= high")
    # a fit writes spreads > 0 for the inputs and >= 0 for the outputs (0: an output that never changed)
    if not bool((model.in_std > 0).all()) or not bool((model.out_std >= 0).all()):
        raise ValueError("the normalisation spreads must be > 0 (inputs) and >= 0 (outputs): predictions would be "
                         "NaN or inf")  # fmt: skip
    elites = model.elite_idx
    if len(elites.unique()) != len(elites) or not bool(((elites >= 0) & (elites < model.config.ensemble_size)).all()):
        raise ValueError(f"elite indices must be distinct members of 0..{model.config.ensemble_size - 1}, got "
                         f"{elites.tolist()}")  # fmt: skip
    auto = float(model.auto_threshold)
    if not (math.isnan(auto) or 0 <= auto < math.inf):
        raise ValueError(f"the auto threshold must be a number >= 0 (or unset), got {auto}")
    record = model.cutoff_calibration
    if record is not None and not (
        isinstance(record.threshold, (int, float)) and math.isclose(record.threshold, auto, rel_tol=1e-6, abs_tol=1e-12)
    ):
        raise ValueError(f"the calibration record's threshold {record.threshold!r} differs from the auto threshold "
                         f"{auto}")  # fmt: skip


def _obs_range(value: Any, obs_dim: int) -> tuple[np.ndarray, np.ndarray]:
    low, high = (np.asarray(bound, np.float32).reshape(-1) for bound in value)
    if low.shape != (obs_dim,) or high.shape != (obs_dim,):
        raise ValueError(f"observed_obs_range must hold two arrays of {obs_dim} values")
    return low, high


def _as_tensor(value: Any, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Tensors pass through (no copy on the right device); lists and arrays are converted in one go."""
    if not isinstance(value, torch.Tensor):
        value = np.asarray(value)
    return torch.as_tensor(value, dtype=dtype, device=device)
