"""World Models (Ha & Schmidhuber 2018) from pixels: collect frames, fit V and M, train C in the dream, repeat."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from dream_envs.agents.base import ModelBasedAgent
from dream_envs.agents.world_models.controller import LinearController, train_controller
from dream_envs.agents.world_models.frames import FrameStore
from dream_envs.agents.world_models.latent_dream import LatentDream, LatentDreamEnv, check_tau
from dream_envs.agents.world_models.mdn_rnn import MDNRNN, fit_mdn_rnn
from dream_envs.agents.world_models.vae import FRAME_SIZE, ConvVAE, fit_vae
from dream_envs.checks import check_int, check_number, check_probability
from dream_envs.device import resolve_device
from dream_envs.envs.pixels import PixelObservation, is_image_space, resize_frames
from dream_envs.spaces import action_input_dim, check_action_space, encode_action

__all__ = ["WorldModels", "pixel_env"]

_MAX_DREAM_STEPS = 1000


def pixel_env(env: gym.Env | VecEnv | str) -> gym.Env | VecEnv:
    """The env World Models learns from: unchanged if its observations are RGB images (``H x W x 3`` uint8),
    else wrapped in :class:`~dream_envs.envs.PixelObservation` (an id is made with ``render_mode="rgb_array"``)."""
    if isinstance(env, str):
        env = gym.make(env, render_mode="rgb_array")
    if is_image_space(env.observation_space):
        return env
    if isinstance(env, VecEnv):
        raise ValueError(
            f"a VecEnv given to WorldModels must already observe RGB images (H x W x 3 uint8), but its observation "
            f"space is {env.observation_space}; pass the gymnasium env itself, made with render_mode='rgb_array', "
            "or wrap it in dream_envs.envs.PixelObservation before vectorising"
        )
    if getattr(env, "render_mode", None) != "rgb_array":
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise ValueError(
            f"WorldModels learns from pixels: {name} observes {env.observation_space} (not an RGB image) and has "
            f"render_mode={getattr(env, 'render_mode', None)!r}, so it cannot render frames either; make it with "
            f"gym.make({name!r}, render_mode='rgb_array')"
        )
    return PixelObservation(env, size=FRAME_SIZE)


def _check_channels(channels: Any) -> tuple[int, ...]:
    """``vae_channels`` as four ints, or a ``ValueError`` naming the one at fault (``8.7`` is not truncated)."""
    if isinstance(channels, (str, bytes)) or not isinstance(channels, (Sequence, np.ndarray)) or len(channels) != 4:
        raise ValueError(f"vae_channels must be 4 positive integers (the widths of the VAE's four convolutions), got "
                         f"{channels!r}")  # fmt: skip
    return tuple(check_int(f"vae_channels[{index}]", width) for index, width in enumerate(channels))


class WorldModels(ModelBasedAgent):
    """World Models: V (a convolutional VAE, frames -> ``z``), M (an MDN-RNN, ``(z, a) -> `` next ``z``, reward,
    termination) and C (a linear controller on ``[z, h]``) trained with CMA-ES ENTIRELY inside M's dream.

    Each iteration of ``learn`` acts ``frames_per_iteration`` real steps (random actions in the first iteration,
    then the controller with ``exploration`` random actions), refits V on every frame so far (warm start), encodes
    them, refits M on the latent episodes (teacher forcing), then runs CMA-ES in the dream: every generation plays
    ``cma_popsize x dream_episodes`` dream episodes from real first frames as one batch.

    **What the agent sees.** Only frames. An env whose observations are already RGB images (``H x W x 3`` uint8;
    resized to 64x64 inside) is used as it is; any other env must render ``rgb_array`` and is wrapped in
    :class:`~dream_envs.envs.PixelObservation`, so the state vector never reaches the controller. An env id is made
    with ``render_mode="rgb_array"``. To evaluate, give the agent the same frames::

        evaluate_policy(agent, PixelObservation(gym.make("CartPole-v1", render_mode="rgb_array")))

    ``predict`` is recurrent in SB3's sense: it returns M's memory ``(h, c)`` (numpy, ``n_envs x H`` each) as the
    state and takes it back with ``episode_start``, which is what ``evaluate_policy`` does.

    ``save`` keeps V, M, C and the dream's starting latents, not the frames (245 MB at 20,000 frames): an agent
    loaded and trained further refits V and M on the frames it collects from then on.

    The network sizes are the pixel CartPole configuration of docs/world_models.md, sized for a 2-core CPU: the paper's
    VAE widths ``(32, 64, 128, 256)`` cost 4.3 ms per frame per training step on one thread, ``(8, 16, 32, 64)``
    0.66 ms and still encode cart and pole; ``latent_size=16`` and ``hidden_size=64`` suffice for a 4-dimensional
    state (the paper's 32 and 256 are for CarRacing and Doom); ``tau=1.15`` is the paper's Doom temperature. That
    page fits V and M longer than the defaults here (``vae_epochs=10``, ``mdn_epochs=60``): 3 of 3 seeds reached its
    target with those, 1 of 3 with ``vae_epochs=2``, ``mdn_epochs=30`` (one 3-seed run each).

    :param env: the real env: an id, a gymnasium Env or a VecEnv of one env (see above)
    :param latent_size: ``Z`` (32 in the paper)
    :param hidden_size: ``H``, M's LSTM size (256 in the paper)
    :param n_mixtures: Gaussians per latent dimension in M's head
    :param vae_channels: the VAE's four convolution widths (the paper's: ``(32, 64, 128, 256)``)
    :param tau: temperature of the dream's latent sampling (> 1: a harder, less exploitable dream)
    :param frames_per_iteration: real steps collected between refits
    :param vae_epochs: VAE passes over all frames per iteration
    :param mdn_epochs: MDN-RNN passes over all latent episodes per iteration
    :param batch_size: VAE batch (frames); M's batch is ``batch_size // 2`` sequences
    :param learning_rate: Adam's learning rate for V and M
    :param kl_tolerance: KL floor in nats per latent dimension (the paper floors the sum at 0.5 per dimension;
        per dimension and 2.0, the encoder of CartPole frames learns from the first epoch; at 0.5 it was ignored)
    :param sequence_length: M trains on episodes cut into pieces of at most this many steps
    :param termination_pos_weight: weight of terminal steps in M's termination loss; None: non-terminal steps per
        terminal step, so that the dream's 0.5 threshold balances missed and false terminations
    :param cma_generations: CMA-ES generations per iteration
    :param cma_popsize: CMA-ES candidates per generation
    :param dream_episodes: dream episodes per candidate
    :param max_dream_steps: dream episode cap; None: the env's ``max_episode_steps`` (at most 1000)
    :param cma_sigma0: CMA-ES initial step size
    :param exploration: probability of a random action while collecting (after the first iteration)
    :param mid_episode_starts: share of CMA-ES's dream episodes that start at a real mid-episode state, with M's
        memory of the real frames before it (0: all at real first frames, as in the paper); the dream return
        that chooses the final controller and that is logged always starts at first frames
    :param seed: seeds the networks, CMA-ES, the dream, exploration and the env
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param verbose: 1 prints SB3's log table after every iteration
    :param tensorboard_log: folder for TensorBoard logs, or None

    Example::

        import gymnasium as gym
        from stable_baselines3.common.evaluation import evaluate_policy
        from dream_envs.agents import WorldModels
        from dream_envs.envs import PixelObservation

        agent = WorldModels("CartPole-v1", latent_size=8, hidden_size=16, vae_channels=(4, 8, 8, 16),
                            frames_per_iteration=100, vae_epochs=1, mdn_epochs=1, cma_generations=2, cma_popsize=4,
                            dream_episodes=2, max_dream_steps=20, seed=0).learn(200)
        real_env = PixelObservation(gym.make("CartPole-v1", render_mode="rgb_array"))
        print(evaluate_policy(agent, real_env, n_eval_episodes=1))
    """

    _hyperparams = ("latent_size", "hidden_size", "n_mixtures", "vae_channels", "tau", "frames_per_iteration",
                    "vae_epochs", "mdn_epochs", "batch_size", "learning_rate", "kl_tolerance", "sequence_length",
                    "termination_pos_weight", "cma_generations", "cma_popsize", "dream_episodes", "max_dream_steps",
                    "cma_sigma0", "exploration", "mid_episode_starts", "seed", "device", "verbose",
                    "tensorboard_log")  # fmt: skip

    def __init__(
        self,
        env: gym.Env | VecEnv | str,
        latent_size: int = 16,
        hidden_size: int = 64,
        n_mixtures: int = 5,
        vae_channels: tuple[int, ...] = (8, 16, 32, 64),
        tau: float = 1.15,
        frames_per_iteration: int = 4000,
        vae_epochs: int = 2,
        mdn_epochs: int = 30,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        kl_tolerance: float = 2.0,
        sequence_length: int = 500,
        termination_pos_weight: float | None = None,
        cma_generations: int = 30,
        cma_popsize: int = 32,
        dream_episodes: int = 8,
        max_dream_steps: int | None = None,
        cma_sigma0: float = 0.5,
        exploration: float = 0.1,
        mid_episode_starts: float = 0.0,
        seed: int | None = None,
        device: str = "auto",
        verbose: int = 0,
        tensorboard_log: str | None = None,
    ):
        self.tau = check_tau(tau)
        for name, value in (("latent_size", latent_size), ("hidden_size", hidden_size), ("n_mixtures", n_mixtures),
                            ("frames_per_iteration", frames_per_iteration), ("vae_epochs", vae_epochs),
                            ("mdn_epochs", mdn_epochs), ("batch_size", batch_size),
                            ("cma_generations", cma_generations), ("dream_episodes", dream_episodes)):  # fmt: skip
            setattr(self, name, check_int(name, value))
        self.sequence_length = check_int("sequence_length", sequence_length, 2)
        self.cma_popsize = check_int("cma_popsize", cma_popsize, 2)
        if max_dream_steps is not None:
            max_dream_steps = check_int("max_dream_steps", max_dream_steps)
        self.max_dream_steps = max_dream_steps
        # Numbers of Python or numpy (np.float32(1e-3) too), finite: NaN or inf here would train V, M or C on NaN.
        self.learning_rate = check_number("learning_rate", learning_rate, 0.0, math.inf, low_open=True,
                                          high_open=True)  # fmt: skip
        self.cma_sigma0 = check_number("cma_sigma0", cma_sigma0, 0.0, math.inf, low_open=True, high_open=True)
        self.kl_tolerance = check_number("kl_tolerance (nats per latent dimension)", kl_tolerance, 0.0, math.inf,
                                         high_open=True)  # fmt: skip
        self.termination_pos_weight = None if termination_pos_weight is None else check_number(
            "termination_pos_weight (None: auto)", termination_pos_weight, 0.0, math.inf, low_open=True,
            high_open=True,
        )  # fmt: skip
        self.exploration = check_probability("exploration", exploration)
        self.mid_episode_starts = check_probability("mid_episode_starts", mid_episode_starts)
        self.vae_channels = _check_channels(vae_channels)
        check_int("verbose", verbose, minimum=0)  # again by the base class, after the env is made
        self.device = device
        super().__init__(pixel_env(env), seed=seed, verbose=verbose, tensorboard_log=tensorboard_log)
        if not is_image_space(self.observation_space):
            raise ValueError(f"WorldModels needs RGB image observations, got {self.observation_space}")
        check_action_space(self.action_space)
        self._device = resolve_device(device)
        self.vae = ConvVAE(self.latent_size, self.vae_channels, seed=seed).to(self._device)
        model_seed = None if seed is None else seed + 1
        self.mdn = MDNRNN(self.latent_size, action_input_dim(self.action_space), self.hidden_size, self.n_mixtures,
                          seed=model_seed).to(self._device)  # fmt: skip
        self.controller = LinearController(self.latent_size + self.hidden_size, self.action_space)
        self.controller_params = torch.zeros(self.controller.num_params)
        self.start_latents = torch.zeros(1, self.latent_size)
        self._mid_episode_states: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        torch_seed = int(self.rng.integers(2**62))
        self._generator = torch.Generator(device=self._device).manual_seed(torch_seed)  # V's and M's, on their device
        self.store = FrameStore((FRAME_SIZE, FRAME_SIZE, 3), self.action_space)
        self.iterations = 0
        self.last_dream_return: float | None = None
        self._stored_obs: np.ndarray | None = None
        self._memory: tuple[np.ndarray, np.ndarray] | None = None
        self._episode_start = np.ones(1, dtype=bool)

    # ------------------------------------------------------------------ the dream
    @property
    def dream_steps(self) -> int:
        """Length cap of a dream episode."""
        if self.max_dream_steps is not None:
            return self.max_dream_steps
        spec = self.env.get_attr("spec")[0]
        limit = spec.max_episode_steps if spec is not None else None
        return min(limit or _MAX_DREAM_STEPS, _MAX_DREAM_STEPS)

    def make_dream_env(self, tau: float | None = None, max_episode_steps: int | None = None) -> LatentDreamEnv:
        """M's dream as a gymnasium Env (observations ``[z, h]``, the real action space) for any agent to train in.

        :param tau: sampling temperature (default: the agent's)
        :param max_episode_steps: truncation length (default: :attr:`dream_steps`)
        """
        return LatentDreamEnv(self.mdn, self.start_latents, self.action_space, self.tau if tau is None else tau,
                              max_episode_steps or self.dream_steps)  # fmt: skip

    # ------------------------------------------------------------------ acting
    def _frames(self, observations: np.ndarray) -> np.ndarray:
        return resize_frames(observations, FRAME_SIZE)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
        """Actions for one frame or a batch, with M's memory carried as SB3's recurrent ``state``.

        :param observation: one ``H x W x 3`` frame or ``n x H x W x 3`` frames
        :param state: ``(h, c)`` returned by the previous call (``n x H`` numpy arrays each), or None (zeros)
        :param episode_start: ``n`` booleans; True zeroes that row's memory (a new episode)
        :param deterministic: the controller's action; False replaces it by a random one with probability
            ``exploration``
        :return: ``(actions, (h, c))``, the memory after feeding ``(z_t, a_t)`` to M
        """
        obs = np.asarray(observation)
        single = obs.shape == self.observation_space.shape
        batch = obs[None] if single else obs
        if batch.ndim != 4 or batch.shape[1:] != self.observation_space.shape:
            raise ValueError(f"observation of shape {obs.shape} does not fit the observation space "
                             f"{self.observation_space} (one frame, or a batch of them)")  # fmt: skip
        n = len(batch)
        if state is None:
            h, c = self.mdn.initial_state(n)
        else:
            h, c = (torch.as_tensor(np.asarray(x, np.float32), device=self._device) for x in state)
            if h.shape != (n, self.hidden_size) or c.shape != (n, self.hidden_size):
                raise ValueError(f"state must be (h, c), each of shape {(n, self.hidden_size)}, got "
                                 f"{tuple(h.shape)} and {tuple(c.shape)}")  # fmt: skip
        if episode_start is not None:
            keep = 1.0 - torch.as_tensor(np.asarray(episode_start, np.float32).reshape(n, 1), device=self._device)
            h, c = h * keep, c * keep
        with torch.no_grad():
            z = self.vae.encode_mean(self._frames(batch))  # (n, Z)
            params = self.controller_params.to(self._device)[None]  # (1, D)
            actions = self.controller.act(torch.cat([z, h], dim=-1)[None], params)[0]  # (n,) or (n, *shape)
            if not deterministic and self.exploration > 0:
                explore = self.rng.random(n) < self.exploration
                if explore.any():
                    random = torch.as_tensor(np.stack([self.action_space.sample() for _ in range(n)]))
                    mask = torch.as_tensor(explore, device=actions.device).reshape(n, *([1] * (actions.dim() - 1)))
                    actions = torch.where(mask, random.to(actions), actions)
            _, (h, c) = self.mdn.step(z, encode_action(self.action_space, actions), (h, c))
        actions_np = actions.cpu().numpy().astype(self.action_space.dtype)
        memory = (h.cpu().numpy(), c.cpu().numpy())
        return (actions_np[0] if single else actions_np), memory

    def _predict(self, observations: np.ndarray, deterministic: bool) -> np.ndarray:
        """Stateless actions (zero memory) for a batch of frames; :meth:`predict` carries the memory."""
        return self.predict(observations, None, None, deterministic)[0]

    # ------------------------------------------------------------------ learning
    def _train(self, total_timesteps: int, callback: BaseCallback) -> None:
        if self._last_obs is not self._stored_obs:  # a fresh reset (first call, or reset_num_timesteps=True)
            self.store.start_episode(self._frames(self._last_obs[0]))
            self._stored_obs, self._memory, self._episode_start = self._last_obs, None, np.ones(1, dtype=bool)
        while self.num_timesteps < total_timesteps:
            callback.on_rollout_start()
            completed = self._collect(min(self.frames_per_iteration, total_timesteps - self.num_timesteps), callback)
            callback.on_rollout_end()
            if not completed:
                return
            self._fit_world_model()
            self._fit_controller()
            self.iterations += 1
            self.logger.record("world_models/iteration", self.iterations)
            self.logger.record("world_models/frames", len(self.store))
            self._dump_logs()

    def _collect(self, n_steps: int, callback: BaseCallback) -> bool:
        """Act ``n_steps`` real steps, storing the frames; False if a callback asked to stop."""
        for _ in range(n_steps):
            obs = self._last_obs
            if self.iterations == 0:  # nothing learned yet: random actions, as in the paper's first rollouts
                actions = np.asarray([self.action_space.sample()])
            else:
                actions, self._memory = self.predict(obs, self._memory, self._episode_start, deterministic=False)
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += 1
            done, info = bool(dones[0]), infos[0]
            terminated = done and not info.get("TimeLimit.truncated", False)
            next_frame = self._frames(info["terminal_observation"] if done else new_obs[0])
            self.store.add_step(actions[0], float(rewards[0]), next_frame, terminated)
            if done:
                self.store.start_episode(self._frames(new_obs[0]))
            self._last_obs = self._stored_obs = new_obs
            self._episode_start = np.asarray([done])
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            if done:
                self._episode_done(info)
        return True

    def _fit_world_model(self) -> None:
        started = time.perf_counter()
        frames = self.store.all_frames()
        vae_history = fit_vae(self.vae, frames, self.vae_epochs, self.batch_size, self.learning_rate,
                              kl_tolerance=self.kl_tolerance, generator=self._generator)  # fmt: skip
        latents = self.vae.encode_mean(frames)  # (N, Z)
        self.start_latents = latents[torch.as_tensor(self.store.episode_start_frames())].cpu()
        sequences = self.store.sequences(latents, self.sequence_length)
        n_terminal = float(sequences.terminated.sum())
        n_valid = float(sequences.mask.sum())
        pos_weight = self.termination_pos_weight
        if pos_weight is None:
            pos_weight = (n_valid - n_terminal) / n_terminal if n_terminal > 0 else 1.0
        mdn_history = fit_mdn_rnn(self.mdn, sequences, self.mdn_epochs, max(self.batch_size // 2, 1),
                                  self.learning_rate, pos_weight, self._generator)  # fmt: skip
        self._mid_episode_states = self._real_states(sequences) if self.mid_episode_starts > 0 else None
        self.logger.record("world_models/vae_loss", vae_history[-1].total)
        self.logger.record("world_models/vae_reconstruction", vae_history[-1].reconstruction)
        self.logger.record("world_models/vae_kl", vae_history[-1].kl)
        self.logger.record("world_models/mdn_loss", mdn_history[-1].total)
        self.logger.record("world_models/mdn_latent_nll", mdn_history[-1].latent_nll)
        self.logger.record("world_models/mdn_reward_mse", mdn_history[-1].reward_mse)
        self.logger.record("world_models/mdn_done_bce", mdn_history[-1].done_bce)
        self.logger.record("world_models/termination_pos_weight", pos_weight)
        self.logger.record("world_models/fit_seconds", time.perf_counter() - started)

    @torch.no_grad()
    def _real_states(self, sequences: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(z, h, c)`` of every real non-terminal state after a first frame: M run over the real latents."""
        h, c = self.mdn.initial_state(len(sequences.lengths))
        found: list[tuple[torch.Tensor, ...]] = []
        for t in range(sequences.mask.shape[1]):
            _, (h, c) = self.mdn.step(sequences.z[:, t], sequences.actions[:, t], (h, c))
            keep = sequences.mask[:, t] & (sequences.terminated[:, t] == 0)
            found.append((sequences.z[keep, t + 1], h[keep], c[keep]))
        states = tuple(torch.cat(parts) for parts in zip(*found))
        return states if len(states[0]) else None

    def _fit_controller(self) -> None:
        started = time.perf_counter()
        dream = first_frames = LatentDream(self.mdn, self.start_latents, self.action_space, self.tau)
        if self._mid_episode_states is not None:
            z, h, c = self._mid_episode_states
            n_first, n_mid = len(self.start_latents), len(z)
            zeros = torch.zeros(n_first, self.hidden_size, device=h.device)
            weights = torch.cat([torch.full((n_first,), (1 - self.mid_episode_starts) / n_first),
                                 torch.full((n_mid,), self.mid_episode_starts / n_mid)])  # fmt: skip
            dream = LatentDream(self.mdn, torch.cat([self.start_latents.to(z.device), z]), self.action_space,
                                self.tau, (torch.cat([zeros, h]), torch.cat([zeros, c])), weights)  # fmt: skip
        result = train_controller(dream, self.controller, self.cma_generations, self.cma_popsize, self.dream_episodes,
                                  self.dream_steps, self.cma_sigma0, rng=self.rng,
                                  final_dream=first_frames)  # fmt: skip
        self.controller_params = torch.as_tensor(result.params)
        self.last_dream_return = result.dream_return
        self.logger.record("world_models/dream_return", result.dream_return)
        self.logger.record("world_models/dream_episode_length", result.dream_length)
        self.logger.record("world_models/cma_best_return", max(best for best, _ in result.history))
        self.logger.record("world_models/controller_chosen", result.chosen, exclude="tensorboard")
        self.logger.record("world_models/controller_seconds", time.perf_counter() - started)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, Any]:
        return {
            "vae": {k: v.cpu() for k, v in self.vae.state_dict().items()},
            "mdn": {k: v.cpu() for k, v in self.mdn.state_dict().items()},
            "controller_params": self.controller_params.cpu(), "start_latents": self.start_latents.cpu(),
            "iterations": self.iterations,
        }  # fmt: skip

    def _set_state(self, state: dict[str, Any]) -> None:
        self.vae.load_state_dict(state["vae"])
        self.mdn.load_state_dict(state["mdn"])
        params = torch.as_tensor(state["controller_params"], dtype=torch.float32)
        if params.shape != (self.controller.num_params,):
            raise ValueError(f"controller parameters of shape {tuple(params.shape)}, expected "
                             f"({self.controller.num_params},)")  # fmt: skip
        self.controller_params = params
        self.start_latents = torch.as_tensor(state["start_latents"], dtype=torch.float32)
        self.iterations = int(state["iterations"])
