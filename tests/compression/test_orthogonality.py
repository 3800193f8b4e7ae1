"""The near-orthogonality regulariser and its closed-form gradient."""

import pytest
import torch

from lit_airlora.compression.orthogonality import orthogonality_grads, orthogonality_penalty
from tests.compression.compression_helpers import orthogonal_factors


def test_closed_form_gradient_matches_autograd():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 9, generator=g, dtype=torch.float64, requires_grad=True)
    B = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    grad_a, grad_b = torch.autograd.grad(orthogonality_penalty(A, B), [A, B])
    closed_a, closed_b = orthogonality_grads(A.detach(), B.detach())
    torch.testing.assert_close(closed_a, grad_a)
    torch.testing.assert_close(closed_b, grad_b)


def test_penalty_is_zero_on_orthogonal_factors_and_ignores_magnitudes():
    g = torch.Generator().manual_seed(1)
    A, B = orthogonal_factors(9, 7, torch.tensor([3.0, 1.0, 0.1]), g)
    assert float(orthogonality_penalty(A, B)) < 1e-10
    A2 = torch.randn(3, 9, generator=g)
    expected = sum(float(A2[i] @ A2[j]) ** 2 for i in range(3) for j in range(3) if i != j)
    assert float(orthogonality_penalty(A2, torch.zeros(7, 3))) == pytest.approx(expected, rel=1e-6)
