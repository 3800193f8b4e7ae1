"""AirLLM's conditional DDIM refiner: coarse action -> a vector in ``[-1, 1]^L`` (one per adapter).

The noise schedule, its inference timesteps and the deterministic DDIM update (eta = 0) come
from diffusers' ``DDIMScheduler``; the denoiser, classifier-free guidance (a pipeline step
diffusers does not expose for custom models) and the reward-weighted loss are ours. Sampling
reads the scheduler's per-step coefficients once (:func:`ddim_coefficients`) and runs the 50
steps as tensor arithmetic, the conditional and unconditional passes as one batch: the same
update as ``DDIMScheduler.step`` (tested equal) without its per-call Python work.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lit_airlora.policy.agent_settings import DDIMSettings


def sinusoidal_embedding(timestep: Tensor, dim: int) -> Tensor:
    """``[B]`` timesteps -> ``[B, dim]`` sinusoidal embedding (sin half, cos half)."""
    half = dim // 2
    frequency = torch.exp(-math.log(10000.0) * torch.arange(half) / max(half - 1, 1))
    angles = timestep.float().unsqueeze(-1) * frequency.unsqueeze(0)  # (B, half)
    embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return nn.functional.pad(embedding, (0, dim - embedding.shape[-1]))


class ConditionalDenoiser(nn.Module):
    """Predicts the noise in ``x_t`` given the timestep and the coarse action.

    Args:
        action_dim: ``L``, one value per adapter.
        cond_dim: Dimension of the coarse action (0 vector: unconditional).
        hidden: Width (AirLLM: 512).
        num_blocks: Residual blocks (AirLLM: 2).
        time_dim: Width of the sinusoidal time embedding.
    """

    def __init__(
        self, action_dim: int, cond_dim: int, hidden: int, num_blocks: int, time_dim: int = 64
    ) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.time_proj = nn.Sequential(nn.Linear(time_dim, hidden), nn.Mish())
        self.input_proj = nn.Linear(action_dim + cond_dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Mish(), nn.Linear(hidden, hidden))
            for _ in range(num_blocks)
        )
        self.output = nn.Sequential(nn.LayerNorm(hidden), nn.Mish(), nn.Linear(hidden, action_dim))

    def forward(self, x: Tensor, timestep: Tensor, cond: Tensor) -> Tensor:
        """``x: [B, L]``, ``timestep: [B]`` int, ``cond: [B, C]`` -> noise ``[B, L]``."""
        return self.denoise(x, self.embed_time(timestep), cond)

    def embed_time(self, timestep: Tensor) -> Tensor:
        """``[B]`` int timesteps -> ``[B, hidden]`` (computed once per sampling run)."""
        return self.time_proj(sinusoidal_embedding(timestep, self.time_dim))

    def denoise(self, x: Tensor, time_embedding: Tensor, cond: Tensor) -> Tensor:
        """:meth:`forward` from an embedded timestep (``[B, hidden]`` or ``[hidden]``)."""
        h = self.input_proj(torch.cat([x, cond], dim=-1)) + time_embedding  # (B, H)
        for block in self.blocks:
            h = h + block(h)
        return self.output(h)


def make_scheduler(num_train_timesteps: int, beta_start: float, beta_end: float):
    """diffusers' DDIM with scaled-linear betas, ``x_0`` clipped to ``[-1, 1]``, and the
    "trailing" spacing, so the last of the inference steps lands on ``t = 0``'s clean sample."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=beta_start,
        beta_end=beta_end,
        beta_schedule="scaled_linear",
        clip_sample=True,
        clip_sample_range=1.0,
        set_alpha_to_one=True,
        prediction_type="epsilon",
        timestep_spacing="trailing",
    )


def ddim_coefficients(scheduler, num_inference_steps: int) -> tuple[Tensor, Tensor]:
    """The timesteps ``[S]`` and ``[S, 4]`` float32 coefficients ``(sqrt a_t, sqrt(1 - a_t),
    sqrt a_prev, sqrt(1 - a_prev))`` of ``scheduler``'s deterministic steps (eta 0).

    ``a_prev`` follows ``DDIMScheduler.step``: ``t - T // S``, or ``final_alpha_cumprod``
    below 0. The powers are taken on float32 tensors, as the scheduler does, so the update
    matches its ``step`` to the last bit.
    """
    scheduler.set_timesteps(num_inference_steps)
    stride = scheduler.config.num_train_timesteps // num_inference_steps
    rows = []
    for t in scheduler.timesteps.tolist():
        a_t = scheduler.alphas_cumprod[t]
        a_prev = (
            scheduler.alphas_cumprod[t - stride] if t >= stride else scheduler.final_alpha_cumprod
        )
        rows.append(torch.stack([a_t**0.5, (1 - a_t) ** 0.5, a_prev**0.5, (1 - a_prev) ** 0.5]))
    return scheduler.timesteps.clone(), torch.stack(rows).float()


def ddim_step(x: Tensor, eps: Tensor, coefficients: Tensor, clip: float = 1.0) -> Tensor:
    """One deterministic DDIM step (``DDIMScheduler.step``, epsilon prediction, ``x_0`` clipped
    to ``[-clip, clip]``, eta 0): ``x: [B, L]``, ``eps: [B, L]``, ``coefficients: [4]``."""
    sqrt_a, sqrt_one_minus_a, sqrt_a_prev, sqrt_one_minus_a_prev = coefficients
    x0 = ((x - sqrt_one_minus_a * eps) / sqrt_a).clamp(-clip, clip)
    return sqrt_a_prev * x0 + sqrt_one_minus_a_prev * eps


class DDIMRefiner:
    """Trains and samples the conditional denoiser (reward-weighted, classifier-free guidance).

    Training: ``x_0`` from the replay buffer, ``t`` uniform, ``x_t = sqrt(a_t) x_0 +
    sqrt(1 - a_t) eps``; the per-sample noise MSE is weighted by ``clip(1 + reward_weight z,
    0.1, 10)`` (``z`` the batch z-score of the reward), and the condition is zeroed with
    probability ``cond_dropout``. Sampling: ``num_inference_steps`` DDIM steps with eta 0,
    ``eps = eps_u + guidance_scale (eps_c - eps_u)``.

    Args:
        action_dim: ``L``, one value per adapter.
        cond_dim: Dimension of the coarse action.
        settings: Refiner hyperparameters.
        generator: Generator for noise, timesteps and condition dropout.
    """

    def __init__(
        self, action_dim: int, cond_dim: int, settings: DDIMSettings, generator: torch.Generator
    ) -> None:
        self.settings, self.generator, self.action_dim = settings, generator, action_dim
        self.denoiser = ConditionalDenoiser(
            action_dim, cond_dim, settings.hidden, settings.num_blocks
        )
        self.optimizer = torch.optim.Adam(self.denoiser.parameters(), lr=settings.learning_rate)
        self.scheduler = make_scheduler(
            settings.num_train_timesteps, settings.beta_start, settings.beta_end
        )
        self.alphas_cumprod = self.scheduler.alphas_cumprod.float()  # (T,)
        self.timesteps, self.coefficients = ddim_coefficients(
            self.scheduler, settings.num_inference_steps
        )  # (S,), (S, 4)

    def loss(self, x0: Tensor, cond: Tensor, reward: Tensor) -> Tensor:
        """Reward-weighted noise-prediction loss.

        ``x0: [B, L]`` encoded ranks, ``cond: [B, C]`` coarse actions, ``reward: [B]``.
        """
        batch = x0.shape[0]
        t = torch.randint(0, len(self.alphas_cumprod), (batch,), generator=self.generator)
        noise = torch.randn(x0.shape, generator=self.generator)
        a = self.alphas_cumprod[t].unsqueeze(-1)  # (B, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        drop = torch.rand(batch, 1, generator=self.generator) < self.settings.cond_dropout
        keep = (~drop).float()
        mse = (self.denoiser(x_t, t, cond * keep) - noise).square().mean(-1)  # (B,)
        z = (reward - reward.mean()) / (reward.std(unbiased=False) + 1e-6)
        weight = (1.0 + self.settings.reward_weight * z).clamp(0.1, 10.0)
        return (weight.detach() * mse).mean()

    def train_step(self, x0: Tensor, cond: Tensor, reward: Tensor) -> float:
        loss = self.loss(x0, cond, reward)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.denoiser.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        return float(loss.detach())

    @torch.inference_mode()
    def sample(self, cond: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Deterministic DDIM (eta 0) from noise: ``cond: [B, C]`` -> ``[B, L]`` in [-1, 1]."""
        generator = generator or self.generator
        batch = cond.shape[0]
        x = torch.randn((batch, self.action_dim), generator=generator)
        both = torch.cat([cond, torch.zeros_like(cond)])  # (2B, C): conditional, unconditional
        time_embedding = self.denoiser.embed_time(self.timesteps)  # (S, H)
        scale = self.settings.guidance_scale
        for step, coefficients in enumerate(self.coefficients):
            eps_c, eps_u = self.denoiser.denoise(x.repeat(2, 1), time_embedding[step], both).split(
                batch
            )
            x = ddim_step(x, eps_u + scale * (eps_c - eps_u), coefficients)
        return x.clamp(-1.0, 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"denoiser": self.denoiser.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.denoiser.load_state_dict(state["denoiser"])
        self.optimizer.load_state_dict(state["optimizer"])


class ReplayBuffer:
    """Ring buffer of ``(coarse action, encoded ranks, reward)`` as preallocated tensors.

    Args:
        capacity: Maximum number of transitions (oldest overwritten).
        cond_dim: Coarse-action dimension.
        action_dim: Encoded-rank dimension.
    """

    def __init__(self, capacity: int, cond_dim: int, action_dim: int) -> None:
        self.cond = torch.zeros(capacity, cond_dim)
        self.x0 = torch.zeros(capacity, action_dim)
        self.reward = torch.zeros(capacity)
        self.size, self.cursor = 0, 0

    def add(self, cond: Tensor, x0: Tensor, reward: float) -> None:
        self.cond[self.cursor], self.x0[self.cursor] = cond, x0
        self.reward[self.cursor] = float(reward)
        self.cursor = (self.cursor + 1) % len(self.reward)
        self.size = min(self.size + 1, len(self.reward))

    def __len__(self) -> int:
        return self.size

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Up to ``batch_size`` distinct transitions: ``(x0 [B, L], cond [B, C], reward [B])``."""
        index = torch.randperm(self.size, generator=generator)[:batch_size]
        return self.x0[index], self.cond[index], self.reward[index]

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {
            "cond": self.cond[:n].clone(),
            "x0": self.x0[:n].clone(),
            "reward": self.reward[:n].clone(),
            "cursor": self.cursor,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = len(state["reward"])
        self.cond[:n], self.x0[:n], self.reward[:n] = state["cond"], state["x0"], state["reward"]
        self.size, self.cursor = n, int(state["cursor"])
