"""The DDIM refiner: reproducible deterministic sampling, reward-weighted training, the buffer."""

from __future__ import annotations

import contextlib

import pytest
import torch

from lit_airlora.policy.agent_settings import DDIMSettings
from lit_airlora.policy.ddim import (
    DDIMRefiner,
    ReplayBuffer,
    ddim_coefficients,
    ddim_step,
    make_scheduler,
)


@contextlib.contextmanager
def single_thread():
    """One intra-op thread for the 600 tiny updates (2 threads on a busy CPU: ~50x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _refiner(action_dim=2, cond_dim=1, seed=0, **overrides) -> DDIMRefiner:
    kwargs = {"hidden": 64, "num_train_timesteps": 100, "num_inference_steps": 20}
    kwargs.update(overrides)
    torch.manual_seed(seed)
    return DDIMRefiner(
        action_dim, cond_dim, DDIMSettings(**kwargs), torch.Generator().manual_seed(seed)
    )


def test_eta_zero_sampling_is_reproducible_and_bounded():
    refiner = _refiner(action_dim=5, cond_dim=3)
    cond = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    first = refiner.sample(cond, torch.Generator().manual_seed(7))
    second = refiner.sample(cond, torch.Generator().manual_seed(7))
    other = refiner.sample(cond, torch.Generator().manual_seed(8))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert first.shape == (4, 5) and float(first.abs().max()) <= 1.0


def test_sampling_steps_equal_diffusers_ddim_step():
    """The precomputed deterministic update is ``DDIMScheduler.step`` (eta 0, x_0 clipped) at
    every one of the paper's 50 steps, to float32 round-off (atol 1e-6)."""
    scheduler = make_scheduler(1000, 1e-4, 2e-2)
    timesteps, coefficients = ddim_coefficients(make_scheduler(1000, 1e-4, 2e-2), 50)
    scheduler.set_timesteps(50)
    assert torch.equal(timesteps, scheduler.timesteps) and timesteps[-1] == 19
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, generator=generator)
    for step, t in enumerate(timesteps.tolist()):
        eps = 2.0 * torch.randn(3, 7, generator=generator)  # large enough to hit the x_0 clip
        expected = scheduler.step(eps, t, x, eta=0.0).prev_sample
        x_next = ddim_step(x, eps, coefficients[step])
        torch.testing.assert_close(x_next, expected, rtol=0, atol=1e-6)
        x = expected
    assert torch.equal(coefficients[-1, 2:], torch.tensor([1.0, 0.0]))  # a_prev = 1 at the end


def test_batched_guidance_matches_two_passes():
    """One batched pass of (conditional, unconditional) gives the guided noise of two passes."""
    refiner = _refiner(action_dim=5, cond_dim=3)
    denoiser = refiner.denoiser
    x, cond = torch.randn(2, 5), torch.randn(2, 3)
    step = torch.full((2,), 40)
    with torch.no_grad():
        eps_c, eps_u = denoiser(x, step, cond), denoiser(x, step, torch.zeros_like(cond))
        both = denoiser.denoise(
            x.repeat(2, 1), denoiser.embed_time(step[:1]), torch.cat([cond, 0 * cond])
        )
    torch.testing.assert_close(both, torch.cat([eps_c, eps_u]), rtol=1e-5, atol=1e-6)


def test_trained_refiner_concentrates_on_the_high_reward_mode():
    """Two equally frequent modes in the buffer, rewards +1 at (0.6, 0.6) and -1 at
    (-0.6, -0.6); with reward weights clip(1 + z, 0.1, 10) (= 2 and 0.1) the refiner should
    put most of its samples near the rewarded mode (about 85% measured; an unweighted
    refiner, reward_weight 0, gives about 50/50). Tolerance: at least 75% of 200 samples
    within 0.3 (max-norm) of it, and at most 20% near the other (fixed seeds)."""
    refiner = _refiner(reward_weight=1.0, learning_rate=2e-3, cond_dropout=0.0)
    generator = torch.Generator().manual_seed(3)
    good, bad = torch.tensor([0.6, 0.6]), torch.tensor([-0.6, -0.6])
    with single_thread():
        for _ in range(600):
            pick = torch.rand(128, generator=generator) < 0.5
            x0 = torch.where(pick.unsqueeze(-1), good, bad) + 0.05 * torch.randn(
                128, 2, generator=generator
            )
            reward = torch.where(pick, 1.0, -1.0)
            refiner.train_step(x0, torch.zeros(128, 1), reward)
        samples = refiner.sample(torch.zeros(200, 1), torch.Generator().manual_seed(0))
    near_good = ((samples - good).abs().max(-1).values < 0.3).float().mean()
    near_bad = ((samples - bad).abs().max(-1).values < 0.3).float().mean()
    assert near_good >= 0.75 and near_bad <= 0.2, (float(near_good), float(near_bad))


def test_replay_buffer_wraps_and_round_trips():
    buffer = ReplayBuffer(capacity=3, cond_dim=2, action_dim=1)
    for i in range(5):
        buffer.add(torch.full((2,), float(i)), torch.full((1,), float(i)), reward=float(i))
    assert len(buffer) == 3 and sorted(buffer.reward.tolist()) == [2.0, 3.0, 4.0]
    copy = ReplayBuffer(capacity=3, cond_dim=2, action_dim=1)
    copy.load_state_dict(buffer.state_dict())
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    for a, b in zip(buffer.sample(2, g1), copy.sample(2, g2), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta_start": 0.05, "beta_end": 0.02}, "`beta_start`"),
        ({"beta_end": 1.5}, "`beta_start`"),
        ({"guidance_scale": -1.0}, "`guidance_scale`"),
        ({"guidance_scale": float("nan")}, "`guidance_scale`"),
        ({"buffer_size": 0}, "`buffer_size`"),
        ({"warmup": 200, "buffer_size": 100}, "`warmup`"),
        ({"num_inference_steps": 2000}, "`num_inference_steps`"),
        ({"hidden": 0}, "`hidden`"),
        ({"cond_dropout": 1.0}, "`cond_dropout`"),
    ],
)
def test_bad_ddim_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DDIMSettings(**kwargs)
