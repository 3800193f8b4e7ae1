"""TSFA's offline rank: the minimiser of the bound surrogate."""

import pytest

from lit_airlora.control.structural_rank import RankBound, structural_rank


def test_structural_rank_minimises_the_bound_near_its_continuous_optimum():
    bound = RankBound(approx_coeff=4.0, approx_decay=1.0, covariance_coeff=0.03, payload_coeff=0.01)
    rank = structural_rank(bound, max_rank=64)
    assert rank == min(range(1, 65), key=bound)
    assert abs(rank - (4.0 / 0.04) ** 0.5) <= 1  # continuous minimiser sqrt(a / c) = 10
    assert structural_rank(bound, max_rank=4) == 4  # clipped by the allocation
    assert structural_rank(RankBound(payload_coeff=100.0), max_rank=8) == 1


def test_rank_bound_rejects_bad_constants():
    with pytest.raises(ValueError, match="`approx_coeff`"):
        RankBound(approx_coeff=0.0)
    with pytest.raises(ValueError, match=r"`payload_coeff` \(-1.0\) must be >= 0"):
        RankBound(payload_coeff=-1.0)
