"""Receive beamformers: unit norm, and the manifold optimiser never loses to matched filtering."""

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


@pytest.mark.parametrize("seed", range(5))
def test_manifold_never_worse_than_matched_filter(seed):
    h, cost, g = _channels(seed)
    matched = beamforming_cost(h, MatchedFilterBeamformer()(h, cost, 2, g), cost)
    manifold = beamforming_cost(h, ManifoldBeamformer(num_steps=60)(h, cost, 2, g), cost)
    assert torch.all(manifold <= matched * (1 + 1e-12))
    assert float(manifold.sum()) < float(matched.sum())  # and it does improve


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
