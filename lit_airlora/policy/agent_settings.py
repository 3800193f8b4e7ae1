"""Validated hyperparameters of AirLLM's two learners (defaults: the paper's and its code's)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lit_airlora.policy.checks import (
    check_betas,
    check_int,
    check_positive,
    check_unit_interval,
)


@dataclass
class PPOSettings:
    """The coarse PPO actor-critic (Schulman et al., 2017) as AirLLM configures it.

    Args:
        hidden: Width of the MLP encoder (LayerNorm, Mish).
        log_std_init: Initial state-independent log standard deviation.
        log_std_min: Lower clamp of the log standard deviation.
        log_std_max: Upper clamp of the log standard deviation.
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        clip_epsilon: Clip range of the probability ratio.
        value_coef: Weight of the value loss.
        entropy_coef: Weight of the entropy bonus.
        num_epochs: Passes over an episode per update.
        minibatch_size: Steps per minibatch.
        learning_rate: Adam learning rate.
        max_grad_norm: Gradient-norm clip.
        normalize_advantage: Standardise the advantages of an episode (the official code does).
    """

    hidden: int = 256
    log_std_init: float = -0.5
    log_std_min: float = -5.0
    log_std_max: float = 1.0
    gamma: float = 0.95
    gae_lambda: float = 0.95
    clip_epsilon: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    num_epochs: int = 4
    minibatch_size: int = 32
    learning_rate: float = 1e-4
    max_grad_norm: float = 1.0
    normalize_advantage: bool = True

    def __post_init__(self) -> None:
        check_int("hidden", self.hidden, 1)
        if not (math.isfinite(self.log_std_min) and self.log_std_min < self.log_std_max):
            raise ValueError(
                f"`log_std_min` ({self.log_std_min}) must be finite and < `log_std_max` "
                f"({self.log_std_max})."
            )
        if not self.log_std_min <= self.log_std_init <= self.log_std_max:
            raise ValueError(
                f"`log_std_init` ({self.log_std_init}) must be in [log_std_min, log_std_max] = "
                f"[{self.log_std_min}, {self.log_std_max}]."
            )
        check_unit_interval("gamma", self.gamma, closed_right=True)
        check_unit_interval("gae_lambda", self.gae_lambda, closed_right=True)
        check_positive("clip_epsilon", self.clip_epsilon)
        check_unit_interval("clip_epsilon", self.clip_epsilon)
        for name in ("value_coef", "entropy_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` ({value!r}) must be a finite number >= 0.")
        check_int("num_epochs", self.num_epochs, 1)
        check_int("minibatch_size", self.minibatch_size, 1)
        check_positive("learning_rate", self.learning_rate)
        check_positive("max_grad_norm", self.max_grad_norm)


@dataclass
class DDIMSettings:
    """AirLLM's conditional DDIM refiner (Song et al., ICLR 2021) and its replay buffer.

    Args:
        hidden: Width of the denoiser.
        num_blocks: Residual blocks of the denoiser.
        num_train_timesteps: Diffusion steps ``T`` of the noise schedule.
        beta_start: First beta of the scaled-linear schedule.
        beta_end: Last beta of the scaled-linear schedule.
        num_inference_steps: Deterministic DDIM steps when sampling.
        guidance_scale: Classifier-free guidance scale (0: unconditional, 1: conditional).
        cond_dropout: Probability of dropping the condition in training.
        reward_weight: Weight of the reward z-score in the sample weights
            ``clip(1 + reward_weight z, 0.1, 10)``.
        buffer_size: Replay-buffer capacity (transitions).
        warmup: Transitions in the buffer before the refiner trains.
        batch_size: Transitions per refiner update.
        updates_per_episode: Refiner updates after each episode.
        learning_rate: Adam learning rate.
        max_grad_norm: Gradient-norm clip.
    """

    hidden: int = 512
    num_blocks: int = 2
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    num_inference_steps: int = 50
    guidance_scale: float = 1.5
    cond_dropout: float = 0.1
    reward_weight: float = 0.1
    buffer_size: int = 10_000
    warmup: int = 128
    batch_size: int = 64
    updates_per_episode: int = 4
    learning_rate: float = 5e-5
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        check_int("hidden", self.hidden, 1)
        check_int("num_blocks", self.num_blocks, 0)
        check_int("num_train_timesteps", self.num_train_timesteps, 2)
        check_betas(self.beta_start, self.beta_end)
        check_int("num_inference_steps", self.num_inference_steps, 1)
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(
                f"`num_inference_steps` ({self.num_inference_steps}) must be <= "
                f"`num_train_timesteps` ({self.num_train_timesteps})."
            )
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0):
            raise ValueError(
                f"`guidance_scale` ({self.guidance_scale!r}) must be a finite number >= 0 "
                "(AirLLM: 1.5)."
            )
        check_unit_interval("cond_dropout", self.cond_dropout)
        if not (math.isfinite(self.reward_weight) and self.reward_weight >= 0):
            raise ValueError(f"`reward_weight` ({self.reward_weight!r}) must be finite and >= 0.")
        check_int("buffer_size", self.buffer_size, 1)
        check_int("warmup", self.warmup, 1)
        if self.warmup > self.buffer_size:
            raise ValueError(
                f"`warmup` ({self.warmup}) must be <= `buffer_size` ({self.buffer_size}): the "
                "refiner would never train."
            )
        check_int("batch_size", self.batch_size, 1)
        check_int("updates_per_episode", self.updates_per_episode, 0)
        check_positive("learning_rate", self.learning_rate)
        check_positive("max_grad_norm", self.max_grad_norm)
