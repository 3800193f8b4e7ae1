"""Receive beamformers: unit norm; the manifold optimiser reaches a closed-form optimum."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.channel.beamforming import (
    ManifoldBeamformer,
    MatchedFilterBeamformer,
    RandomBeamformer,
)
from lit_airlora.channel.mimo import beamforming_cost

C128 = torch.complex128


def _channels(seed: int, num_clients: int = 6, num_subcarriers: int = 4):
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand((num_clients, 1, 1, 1), dtype=torch.float64, generator=g) * 3 + 0.2
    h = torch.randn((num_clients, num_subcarriers, 4, 2), dtype=C128, generator=g) * scale
    cost = torch.rand(num_clients, dtype=torch.float64, generator=g) + 0.5
    return h, cost, g


@pytest.mark.parametrize("cls", [RandomBeamformer, MatchedFilterBeamformer, ManifoldBeamformer])
def test_unit_frobenius_norm_per_subcarrier(cls):
    h, cost, g = _channels(0)
    combiner = (cls(num_steps=20) if cls is ManifoldBeamformer else cls())(h, cost, 2, g)
    assert combiner.shape == (4, 4, 2) and combiner.dtype == C128
    norms = torch.linalg.matrix_norm(combiner)
    torch.testing.assert_close(norms, torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize("seed", range(3))
def test_manifold_reaches_the_single_client_closed_form(seed):
    """One client, S = 2: min over unit-Frobenius A of tr[(A^H R A)^-1] is (sum_i l_i^-1/2)^2
    (A on R's top-S eigenvectors, powers a_i^2 proportional to l_i^-1/2, Lagrange). The
    matched filter spreads power evenly, S sum_i 1/l_i: worse whenever the l_i differ. The
    optimiser must find the closed form (tolerance 1e-3 relative); keeping its best iterate
    from the matched filter could not by itself pass this."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn((1, 3, 4, 2), dtype=C128, generator=g)
    h[..., 1] *= 0.3  # unequal eigenvalues: the matched filter is strictly suboptimal
    cost = torch.ones(1, dtype=torch.float64)
    eigenvalues = torch.linalg.eigvalsh(h[0] @ h[0].mH)[:, -2:]  # (M, S), top two
    closed_form = eigenvalues.rsqrt().sum(dim=-1).square()  # (M,)
    matched = beamforming_cost(h, MatchedFilterBeamformer()(h, cost, 2, g), cost)
    manifold = beamforming_cost(
        h, ManifoldBeamformer(num_steps=300, learning_rate=0.02)(h, cost, 2, g), cost
    )
    assert torch.all(matched > 1.05 * closed_form)
    torch.testing.assert_close(manifold, closed_form, rtol=1e-3, atol=0.0)


def test_manifold_improves_on_the_matched_filter_for_several_clients():
    h, cost, g = _channels(0)
    matched = beamforming_cost(h, MatchedFilterBeamformer()(h, cost, 2, g), cost)
    manifold = beamforming_cost(h, ManifoldBeamformer(num_steps=60)(h, cost, 2, g), cost)
    assert float(manifold.sum()) < 0.95 * float(matched.sum())  # at least 5% better


def test_random_beamformer_follows_its_generator():
    h, cost, _ = _channels(0)
    first = RandomBeamformer()(h, cost, 2, torch.Generator().manual_seed(9))
    again = RandomBeamformer()(h, cost, 2, torch.Generator().manual_seed(9))
    torch.testing.assert_close(first, again)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_steps": -1}, "num_steps"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"temperature": -1.0}, "temperature"),
    ],
)
def test_manifold_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        ManifoldBeamformer(**kwargs)
