"""How an EnsembleDynamics is fitted: bootstrap members, holdout early stopping, elites, the auto threshold."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dream_envs.buffer import TransitionBuffer
from dream_envs.checks import check_bool, check_int, check_keywords, check_number
from dream_envs.models.calibration import CutoffCalibration, CutoffCalibrationWarning, choose_threshold, cutoff_scores
from dream_envs.models.fit_schedule import fit_schedule
from dream_envs.spaces import encode_action, out_of_bounds_report, spaces_equal

if TYPE_CHECKING:
    from dream_envs.models.ensemble import EnsembleDynamics

__all__ = ["FitResult", "ModelFitError", "check_fit_kwargs", "fit_ensemble"]


class ModelFitError(RuntimeError):
    """A fit that produced no finite loss (it diverged from its first steps): the model is left as it was.

    Example::

        import gymnasium as gym
        from dream_envs import EnsembleDynamics, ModelFitError, TransitionBuffer

        env = gym.make("CartPole-v1")
        buffer = TransitionBuffer.from_env(env).collect(env, n_steps=200, seed=0)
        model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=2, num_elites=1,
                                 hidden_sizes=(16,), seed=0)
        try:
            model.fit(buffer, learning_rate=1e12, max_epochs=2)
        except ModelFitError as error:
            print(error, bool(model.fitted))  # ... the model is left as it was ... False
    """


@dataclass
class FitResult:
    """What :meth:`EnsembleDynamics.fit` did: losses per epoch, and the final holdout error per member.

    :param epochs: passes over the training split that ran
    :param train_loss: mean training loss per epoch (NLL or MSE, plus termination BCE)
    :param holdout_loss: mean holdout loss over members per epoch: MSE (normalised units) plus the termination
        head's loss when it is learned (what early stopping watches)
    :param holdout_mse_per_member: final holdout MSE of each member (best weights restored)
    :param holdout_loss_per_member: final holdout loss of each member (what picks the elites)
    :param holdout_error_per_output: the elite mean's holdout MSE per output (observation change dims, then the
        reward), in units of that output's variance in the fit data: 1 - R^2, so 0 is exact and 1 no better than
        predicting the mean; 0 for an output that never changed
    :param reward_error: the elite mean's holdout MSE of the reward on NON-terminal rows, in units of the rewards'
        variance in the fit data (1 - R^2 when nothing terminates): a sparse reward paid on the terminal step
        (Acrobot's 0, MountainCar's +100) is the termination head's business, while a dense reward the model cannot
        fit shows here; NaN when no non-terminal row was held out, 0 for a reward that never changed
    :param elites: indices of the elite members
    :param termination_accuracy: holdout accuracy of the elites' termination head, if learned
    :param auto_threshold: the ``uncertainty_threshold="auto"`` value (see :attr:`cutoff`)
    :param cutoff: how the auto threshold was placed on held-out real rollouts
    :param n_train: rows in the training split
    :param n_holdout: rows held out
    :param batch_size: rows per member per gradient step
    :param gradient_steps: optimiser steps taken (each updates every member)
    :param warm: whether the fit continued from fitted weights

    Example::

        import gymnasium as gym
        from dream_envs import EnsembleDynamics, TransitionBuffer

        env = gym.make("CartPole-v1")
        buffer = TransitionBuffer.from_env(env).collect(env, n_steps=300, seed=0)
        model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=3, num_elites=2,
                                 hidden_sizes=(32,), seed=0)
        result = model.fit(buffer, max_epochs=3, seed=0)
        print(result.epochs, result.holdout_loss[-1], result.elites)
    """

    epochs: int
    train_loss: list[float] = field(default_factory=list)
    holdout_loss: list[float] = field(default_factory=list)
    holdout_mse_per_member: list[float] = field(default_factory=list)
    holdout_loss_per_member: list[float] = field(default_factory=list)
    holdout_error_per_output: list[float] = field(default_factory=list)
    reward_error: float = float("nan")
    elites: list[int] = field(default_factory=list)
    termination_accuracy: float | None = None
    auto_threshold: float = float("nan")
    cutoff: CutoffCalibration | None = None
    n_train: int = 0
    n_holdout: int = 0
    batch_size: int = 0
    gradient_steps: int = 0
    warm: bool = False


def fit_ensemble(model: EnsembleDynamics, buffer: TransitionBuffer, **settings: Any) -> FitResult:
    """The body of :meth:`EnsembleDynamics.fit` (see there for the arguments): whatever stops a fit part-way (a bad
    argument, a diverged loss, an interrupt) leaves the model as it was."""
    before = (
        {name: value.detach().clone() for name, value in model.state_dict().items()},
        {name: getattr(model, name) for name in _FIT_ATTRIBUTES},
    )
    try:
        return _fit(model, buffer, **settings)
    except BaseException:
        model.load_state_dict(before[0])
        for name, value in before[1].items():
            setattr(model, name, value)
        raise


# what a fit sets besides the state dict
_FIT_ATTRIBUTES = ("reward_range", "nonterminal_reward_range", "terminal_reward_range", "observed_obs_range",
                   "start_states", "cutoff_calibration")  # fmt: skip


def _fit(
    model: EnsembleDynamics,
    buffer: TransitionBuffer,
    max_epochs: int | None,
    batch_size: int | None,
    learning_rate: float,
    weight_decay: float,
    holdout_ratio: float,
    max_holdout: int,
    patience: int | None,
    bootstrap: bool,
    balance_termination: bool,
    seed: int | None,
    progress_bar: bool,
    uncertainty_tolerance: float,
    uncertainty_horizon: int,
) -> FitResult:
    _check_buffer(model, buffer)
    settings = _check_fit_values({
        "max_epochs": max_epochs, "batch_size": batch_size, "learning_rate": learning_rate,
        "weight_decay": weight_decay, "holdout_ratio": holdout_ratio, "max_holdout": max_holdout, "patience": patience,
        "bootstrap": bootstrap, "balance_termination": balance_termination, "seed": seed,
        "progress_bar": progress_bar, "uncertainty_tolerance": uncertainty_tolerance,
        "uncertainty_horizon": uncertainty_horizon,
    })  # fmt: skip
    # plain ints and floats from here on (a numpy int8 batch size would overflow in the slicing arithmetic; the
    # calibration record goes into the model file, which loads with weights_only=True)
    max_epochs, batch_size, patience = settings["max_epochs"], settings["batch_size"], settings["patience"]
    learning_rate, weight_decay = settings["learning_rate"], settings["weight_decay"]
    holdout_ratio, max_holdout = settings["holdout_ratio"], settings["max_holdout"]
    uncertainty_tolerance, uncertainty_horizon = settings["uncertainty_tolerance"], settings["uncertainty_horizon"]
    from tqdm.auto import tqdm

    E = model.config.ensemble_size
    rng = np.random.default_rng(seed if seed is not None else model.seed)
    data = buffer.transitions()
    n = len(data.reward)
    x_raw = _raw_inputs(model, data.obs, data.action)  # (N, in)
    y_raw = torch.as_tensor(
        np.concatenate([data.next_obs - data.obs, data.reward[:, None]], axis=1), device=model.device
    )  # (N, out)
    term = torch.as_tensor(data.terminated, dtype=torch.float32, device=model.device)
    # what a "next_obs" termination head reads in training: the real next observation (the dream gives it the
    # predicted one)
    next_obs = torch.as_tensor(data.next_obs, dtype=torch.float32, device=model.device).reshape(n, -1)
    # Terminations are rare (1 row in 20 on early CartPole data): class-balanced weights (mean 1, so the other
    # heads keep their share of the loss) keep the head from learning "never terminates", which would let
    # imagined episodes run on past a failure.
    p_terminal = float(term.mean())
    if balance_termination and 0.0 < p_terminal < 1.0:
        class_weight = (min(0.5 / p_terminal, 50.0), 0.5 / (1.0 - p_terminal))  # (terminal, non-terminal)
    else:
        class_weight = (1.0, 1.0)

    n_holdout = min(int(round(holdout_ratio * n)), max_holdout) if n >= 20 else 0
    hold_rows, segments = _holdout_split(buffer, n_holdout, uncertainty_horizon, rng)
    rest = rng.permutation(np.setdiff1d(np.arange(n), hold_rows))
    hold_idx = torch.as_tensor(hold_rows, dtype=torch.long, device=model.device)
    train_idx = torch.as_tensor(rest, dtype=torch.long, device=model.device)
    n_train = len(train_idx)
    if n_train < 2:
        raise ValueError(
            f"holdout_ratio={holdout_ratio:g} holds out {n_holdout} of the {n} transitions, leaving {n_train} to "
            "train on: at least 2 are needed (lower holdout_ratio or max_holdout)"
        )
    warm = bool(model.fitted)
    if None in (max_epochs, batch_size, patience):  # sized in gradient steps, for whatever batch size is used
        schedule = fit_schedule(max(n_train, 1), warm=warm, batch_size=batch_size)
        batch_size = schedule.batch_size
        max_epochs = schedule.max_epochs if max_epochs is None else max_epochs
        patience = schedule.patience if patience is None else patience

    with torch.no_grad():
        model.in_mean.copy_(x_raw[train_idx].mean(0))
        model.in_std.copy_(_safe_std(x_raw[train_idx]))
        model.out_mean.copy_(y_raw[train_idx].mean(0))
        model.out_std.copy_(_safe_std(y_raw[train_idx]))
    x = (x_raw - model.in_mean) / model.in_std
    y = (y_raw - model.out_mean) / model.out_std

    if bootstrap:
        member_rows = train_idx[torch.as_tensor(rng.integers(0, n_train, size=(E, n_train)), device=model.device)]
    else:
        member_rows = train_idx.unsqueeze(0).expand(E, -1)
    optimizer = _adamw(model.parameters(), learning_rate, weight_decay)
    torch_gen = torch.Generator(device=model.device).manual_seed(int(rng.integers(2**62)))

    result = FitResult(epochs=0, n_train=n_train, n_holdout=n_holdout, batch_size=batch_size, warm=warm)
    best = torch.full((E,), math.inf, device=model.device)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    stale = 0
    bar = tqdm(range(max_epochs), disable=not progress_bar, desc="fit ensemble", unit="epoch")
    for _epoch in bar:
        model.train()
        shuffled = torch.gather(
            member_rows, 1, torch.argsort(torch.rand(member_rows.shape, device=model.device, generator=torch_gen))
        )
        total, batches = 0.0, 0
        for start in range(0, n_train, batch_size):
            rows = shuffled[:, start : start + batch_size]  # (E, b)
            loss = _loss(model, x[rows], y[rows], term[rows], class_weight, next_obs[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            batches += 1
        result.gradient_steps += batches
        result.train_loss.append(float(total) / batches)
        result.epochs += 1
        if n_holdout == 0:
            continue
        holdout = _holdout_loss(model, x[hold_idx], y[hold_idx], term[hold_idx], class_weight, next_obs[hold_idx])
        result.holdout_loss.append(float(holdout.mean()))
        improved = holdout < 0.99 * best
        if improved.any():
            best = torch.where(improved, holdout, best)
            _snapshot_members(model, best_state, improved)
            stale = 0
        else:
            stale += 1
        bar.set_postfix(train=result.train_loss[-1], holdout=result.holdout_loss[-1])
        if stale >= patience:
            break
    bar.close()
    model.eval()
    finite = bool(torch.isfinite(best).any()) if n_holdout else math.isfinite(result.train_loss[-1])
    if not finite:  # a diverged fit must not pass for a fitted model (fit_ensemble puts everything back)
        raise ModelFitError(
            f"fit diverged: no finite {'holdout' if n_holdout else 'training'} loss in {result.epochs} epoch(s) "
            f"(last training loss {result.train_loss[-1]}) with learning_rate={learning_rate:g}; the model is left "
            "as it was. Lower learning_rate, or check the data for extreme values."
        )
    if n_holdout:
        model.load_state_dict(
            {
                **best_state,
                **_normaliser_state(
                    model,
                ),
            }
        )
        final = _holdout_loss(model, x[hold_idx], y[hold_idx], term[hold_idx], class_weight, next_obs[hold_idx])
        model.elite_idx.copy_(torch.argsort(final)[: model.config.num_elites])
        result.holdout_loss_per_member = final.tolist()
        result.holdout_mse_per_member = _holdout_mse(model, x[hold_idx], y[hold_idx]).tolist()
        error = _elite_error_per_output(model, x[hold_idx], y[hold_idx])
        # An output that never changed in the training split is predicted exactly (out_std 0, below).
        result.holdout_error_per_output = torch.where(y_raw[train_idx].std(0) < _CONSTANT_STD, 0.0, error).tolist()
        result.reward_error = _reward_error(model, y, x, term, train_idx, hold_idx)
    result.elites = model.elite_idx.tolist()
    with torch.no_grad():
        model.termination_seen.fill_(bool(p_terminal > 0))
        # Class balancing shifts the head's logit by log(w_terminal / w_other): read as it is, it flags every doubtful
        # row (3 epochs on 3,000 random CartPole steps: 79% of non-terminal rows); fully undone, it misses most
        # terminations (recall 0.35 after 100 epochs). Half undone had the best F1 in 8 of 9 fits (0.76 vs 0.62 and
        # 0.50 after 100 epochs; docs/termination.md); with the next-observation head, the best or tied in 8 of 9.
        model.termination_logit_offset.fill_(0.5 * math.log(class_weight[0] / class_weight[1]))
    if n_holdout and model.config.learn_termination:
        result.termination_accuracy = _termination_accuracy(model, x[hold_idx], term[hold_idx], next_obs[hold_idx])
    with torch.no_grad():
        # An output that never changed in the fit data (a goal that stays put within an episode, a reward that is
        # always 1) is predicted exactly: out_std 0 there, so neither the network's noise on that column nor its
        # sampled variance reaches the dream or the disagreement. Training normalised it with a unit scale.
        model.out_std.copy_(torch.where(y_raw[train_idx].std(0) < _CONSTANT_STD, 0.0, model.out_std))
    model.fitted.fill_(True)
    model.reward_range = _range(data.reward)
    model.nonterminal_reward_range = _range(data.reward[~data.terminated])
    model.terminal_reward_range = _range(data.reward[data.terminated])
    model.observed_obs_range = (
        np.minimum(data.obs.min(0), data.next_obs.min(0)),
        np.maximum(data.obs.max(0), data.next_obs.max(0)),
    )
    _warn_out_of_bounds(model, data)
    starts = buffer.start_states()
    if len(starts):
        model.start_states = torch.as_tensor(starts, device="cpu").clone()
    # The cutoff is calibrated last: it rolls the finished model (elites, normalisers, obs scale) along real segments.
    real_obs = np.concatenate([data.obs[segments[:, :1]], data.next_obs[segments]], axis=1)  # (S, k + 1, obs_dim)
    scores = cutoff_scores(model, real_obs, data.action[segments], uncertainty_horizon) if len(segments) else ((), ())
    result.cutoff = model.cutoff_calibration = choose_threshold(*scores, uncertainty_tolerance, uncertainty_horizon)
    model.auto_threshold.fill_(result.cutoff.threshold)
    result.auto_threshold = result.cutoff.threshold = float(model.auto_threshold)  # the float32 the model keeps
    if result.cutoff.method == "default":
        warnings.warn(
            f"fit: no held-out run of {uncertainty_horizon} real transitions without an episode end (the episodes are "
            f"shorter than uncertainty_horizon, or the {n} transitions too few to hold any out), so the uncertainty "
            "cutoff could not be calibrated: uncertainty_threshold='auto' is the default "
            f"{result.cutoff.threshold:.4g}. Lower uncertainty_horizon or fit on more data.",
            CutoffCalibrationWarning,
            stacklevel=3,
        )
    if model.config.ensemble_size == 1:
        warnings.warn("fit: an ensemble of one member has no disagreement, so the uncertainty cutoff never fires; "
                      "use ensemble_size >= 2", CutoffCalibrationWarning, stacklevel=3)  # fmt: skip
    return result


# Held-out runs of this many horizons give every window of the horizon inside them as a calibration rollout:
# 300 held-out rows (3,000 transitions) give 246 rollouts in runs of 40 where disjoint segments of 10 give 30.
_RUN_HORIZONS = 4


def _holdout_split(
    buffer: TransitionBuffer, n_holdout: int, horizon: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The held-out rows (``n_holdout``), and the calibration rollouts among them (``S x horizon`` row indices).

    Held-out rows are whole runs of real trajectories where the data has them: runs of ``_RUN_HORIZONS`` horizons
    first (every window of ``horizon`` rows in them is a rollout), then single horizons, then single rows, so the
    same rows serve early stopping (one step) and the cutoff's calibration (``horizon`` steps).
    """
    n = len(buffer)
    if horizon > n:  # no run of that many transitions exists: single rows only (the cutoff keeps its default)
        return rng.permutation(n)[:n_holdout].astype(np.int64), np.zeros((0, horizon), np.int64)
    run = _RUN_HORIZONS * horizon
    successors = buffer.successors()
    runs = buffer.segments(run, n_holdout // run, seed=int(rng.integers(2**31)), successors=successors)
    taken = np.zeros(n, bool)
    taken[runs.reshape(-1)] = True
    singles = buffer.segments(horizon, (n_holdout - runs.size) // horizon, seed=int(rng.integers(2**31)),
                              exclude=taken, successors=successors)  # fmt: skip
    taken[singles.reshape(-1)] = True
    rest = rng.permutation(np.flatnonzero(~taken))[: n_holdout - runs.size - singles.size]
    windows = [runs[:, start : start + horizon] for start in range(run - horizon + 1)]
    rollouts = np.concatenate([*windows, singles]) if len(runs) else singles
    return np.concatenate([runs.reshape(-1), singles.reshape(-1), rest]).astype(np.int64), rollouts


def _check_buffer(model: EnsembleDynamics, buffer: Any) -> None:
    if not isinstance(buffer, TransitionBuffer):
        raise TypeError(f"fit expects a TransitionBuffer, got {type(buffer).__name__}")
    if buffer.observation_space.shape != model.observation_space.shape or not spaces_equal(
        buffer.action_space, model.action_space
    ):
        raise ValueError(
            f"buffer spaces ({buffer.observation_space}, {buffer.action_space}) differ from the model's "
            f"({model.observation_space}, {model.action_space})"
        )
    if len(buffer) < 2:
        raise ValueError(f"fit needs at least 2 transitions, the buffer holds {len(buffer)}")


def _optional_size(name: str) -> Callable[[Any], int | None]:
    return lambda value: None if value is None else check_int(name, value)  # None: sized from the data


_POSITIVE = {"low": 0.0, "high": math.inf, "low_open": True, "high_open": True}
_FIT_CHECKS: dict[str, Callable[[Any], Any]] = {
    "max_epochs": _optional_size("max_epochs"),
    "batch_size": _optional_size("batch_size"),
    "patience": _optional_size("patience"),
    "learning_rate": lambda v: check_number("learning_rate", v, **_POSITIVE),
    "weight_decay": lambda v: check_number("weight_decay", v, 0.0, math.inf, high_open=True),
    "holdout_ratio": lambda v: check_number("holdout_ratio", v, 0.0, 1.0, high_open=True),
    "max_holdout": lambda v: check_int("max_holdout", v, minimum=0),
    "bootstrap": lambda v: check_bool("bootstrap", v),
    "balance_termination": lambda v: check_bool("balance_termination", v),
    "seed": lambda v: None if v is None else check_int("seed", v, minimum=0),
    "progress_bar": lambda v: check_bool("progress_bar", v),
    "uncertainty_tolerance": lambda v: check_number("uncertainty_tolerance (real standard deviations)", v, **_POSITIVE),
    "uncertainty_horizon": lambda v: check_int("uncertainty_horizon (model steps)", v),
}


def _check_fit_values(values: dict[str, Any]) -> dict[str, Any]:
    """Each of the fit's settings checked (naming the offending one) and returned as a plain Python value."""
    return {name: _FIT_CHECKS[name](value) for name, value in values.items()}


def check_fit_kwargs(
    fit_kwargs: Any, name: str = "fit_kwargs", reserved: dict[str, str] | None = None
) -> dict[str, Any]:
    """Keyword arguments for :meth:`EnsembleDynamics.fit` checked when they are given (a callback's or agent's
    constructor): every key against the real signature, every value as ``fit`` itself checks it.

    :param reserved: keywords the caller sets itself, with the reason (named in the error)
    :raises ValueError: naming the unknown key (with the nearest valid ones) or the offending value
    """
    from dream_envs.models.ensemble import EnsembleDynamics

    kwargs = check_keywords(name, fit_kwargs, EnsembleDynamics.fit, {"buffer": "it is the data", **(reserved or {})})
    _check_fit_values(kwargs)
    return kwargs


def _raw_inputs(model: EnsembleDynamics, obs: np.ndarray, action: np.ndarray) -> torch.Tensor:
    obs_t = torch.as_tensor(obs, dtype=torch.float32, device=model.device)
    action_t = torch.as_tensor(action, device=model.device).reshape(len(obs_t), -1)
    return torch.cat([obs_t, encode_action(model.action_space, action_t)], dim=-1)


def _termination_logit(
    model: EnsembleDynamics, trunk_logit: torch.Tensor | None, next_obs: torch.Tensor | None
) -> torch.Tensor | None:
    """The termination head's raw logits ``(E, b)``: the trunk's column, or the next-observation head on the real
    next observations ``next_obs`` (``(E, b, obs_dim)``, or ``(b, obs_dim)`` for every member)."""
    if model.termination_net is None:
        return trunk_logit
    if next_obs.ndim == 2:
        next_obs = next_obs.unsqueeze(0).expand(model.config.ensemble_size, -1, -1)
    return model._termination_logits(next_obs)


def _range(values: np.ndarray) -> tuple[float, float] | None:
    return (float(values.min()), float(values.max())) if len(values) else None


def _loss(
    model: EnsembleDynamics,
    x: torch.Tensor,
    y: torch.Tensor,
    term: torch.Tensor,
    class_weight: tuple[float, float] = (1.0, 1.0),
    next_obs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Loss for one batch: ``x`` ``(E, b, in)``, ``y`` ``(E, b, out)``, ``term`` ``(E, b)``, all normalised;
    ``next_obs`` ``(E, b, obs_dim)`` raw, for a ``"next_obs"`` termination head."""
    mean, logvar, logit = model._forward_normalized(x)
    logit = _termination_logit(model, logit, next_obs)
    if model.config.probabilistic:
        inv_var = torch.exp(-logvar)
        nll = ((mean - y) ** 2 * inv_var + logvar).mean()
        # Keep the soft log-variance bounds tight (PETS).
        loss = nll + 0.01 * (model.max_logvar.sum() - model.min_logvar.sum())
    else:
        loss = ((mean - y) ** 2).mean()
    if logit is not None:
        weight = torch.where(term > 0.5, class_weight[0], class_weight[1])
        loss = loss + nn.functional.binary_cross_entropy_with_logits(logit, term, weight=weight)
    return loss


@torch.no_grad()
def _holdout_mse(model: EnsembleDynamics, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model.eval()
    mean, _, _ = model._forward_normalized(x.unsqueeze(0).expand(model.config.ensemble_size, -1, -1))
    return ((mean - y) ** 2).mean(dim=(1, 2))  # (E,)


@torch.no_grad()
def _elite_error_per_output(model: EnsembleDynamics, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(out,)``: the elite mean's MSE per output in normalised units (the output's training variance is 1)."""
    mean, _, _ = model._forward_normalized(x.unsqueeze(0).expand(model.config.ensemble_size, -1, -1))
    return ((mean[model.elite_idx].mean(0) - y) ** 2).mean(0)


@torch.no_grad()
def _reward_error(model: EnsembleDynamics, y: torch.Tensor, x: torch.Tensor, term: torch.Tensor,
                  train_idx: torch.Tensor, hold_idx: torch.Tensor) -> float:  # fmt: skip
    """See :attr:`FitResult.reward_error`."""
    if float(y[train_idx, -1].std()) < _CONSTANT_STD:
        return 0.0
    hold_rows = hold_idx[term[hold_idx] < 0.5]
    if len(hold_rows) == 0:
        return float("nan")
    mean, _, _ = model._forward_normalized(x[hold_rows].unsqueeze(0).expand(model.config.ensemble_size, -1, -1))
    # y is normalised by the training rows' reward spread: this MSE is in units of the rewards' variance
    return float(((mean[model.elite_idx].mean(0)[:, -1] - y[hold_rows, -1]) ** 2).mean())


@torch.no_grad()
def _holdout_loss(
    model: EnsembleDynamics,
    x: torch.Tensor,
    y: torch.Tensor,
    term: torch.Tensor,
    class_weight: tuple[float, float],
    next_obs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-member holdout loss ``(E,)``: the MSE of the means plus, when learned, the termination head's weighted
    cross-entropy (the training loss's own weights), so early stopping and elites watch both."""
    model.eval()
    mean, _, logit = model._forward_normalized(x.unsqueeze(0).expand(model.config.ensemble_size, -1, -1))
    logit = _termination_logit(model, logit, next_obs)
    loss = ((mean - y) ** 2).mean(dim=(1, 2))
    if logit is not None:
        targets = term.expand_as(logit)
        weight = torch.where(targets > 0.5, class_weight[0], class_weight[1])
        bce = nn.functional.binary_cross_entropy_with_logits(logit, targets, weight=weight, reduction="none")
        loss = loss + bce.mean(1)
    return loss


@torch.no_grad()
def _termination_accuracy(
    model: EnsembleDynamics, x: torch.Tensor, term: torch.Tensor, next_obs: torch.Tensor | None = None
) -> float:
    _, _, logit = model._forward_normalized(x.unsqueeze(0).expand(model.config.ensemble_size, -1, -1))
    logit = _termination_logit(model, logit, next_obs)
    predicted = model._terminated(logit[model.elite_idx].mean(0))
    return float((predicted == term.bool()).float().mean())


def _warn_out_of_bounds(model: EnsembleDynamics, data) -> None:
    """Warn (once per set of offending dimensions) when real data leave the declared observation Box."""
    report = out_of_bounds_report(model.observation_space, np.concatenate([data.obs, data.next_obs]))
    if report is None:
        return
    dims, text = report
    if dims <= model._warned_out_of_bounds:
        return
    model._warned_out_of_bounds |= dims
    warnings.warn(
        f"fit: real observations lie outside the declared observation space: {text}. The dream is not clamped to "
        "a declared bound that real data crossed; fix the env's observation_space if it is wrong.",
        stacklevel=4,
    )


def _snapshot_members(model: EnsembleDynamics, snapshot: dict[str, torch.Tensor], members: torch.Tensor) -> None:
    for name, value in model.state_dict().items():
        if name.startswith(("hidden.", "head.", "termination_net.")):
            snapshot[name][members] = value[members].detach()
        elif name in ("max_logvar", "min_logvar"):
            snapshot[name] = value.detach().clone()


def _normaliser_state(model: EnsembleDynamics) -> dict[str, torch.Tensor]:
    return {k: getattr(model, k) for k in ("in_mean", "in_std", "out_mean", "out_std")}


def _adamw(parameters, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with its fused kernel where torch has one for these tensors: on one CPU thread it takes the fit's
    gradient step from 7.2-8.3 ms to 5.1-5.2 ms (the default per-tensor loop: 3 ms of Adam per step, 900 steps on
    CartPole data, measured side by side)."""
    parameters = list(parameters)
    try:
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)


_CONSTANT_STD = 1e-6  # a column whose standard deviation is below this never changed


def _safe_std(values: torch.Tensor) -> torch.Tensor:
    std = values.std(0)
    # Constant columns (a never-taken one-hot, a reward that is always 1) get unit scale, not a division by 0.
    return torch.where(std < _CONSTANT_STD, torch.ones_like(std), std)
