"""Privacy: the accountant against a hand computation, schedules, plans and refusals."""

import math

import pytest
from scipy.stats import norm

from lit_airlora.zeroth_order.privacy import (
    PrivacyAccountant,
    PrivacyBudget,
    gaussian_epsilon,
    plan_noise_multipliers,
)


def test_epsilon_of_a_composition_matches_hand_computation():
    from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS

    rounds, z, delta = 20, 3.0, 1e-5
    # Gaussian RDP composes additively: r(a) = T a / (2 z^2); to (epsilon, delta) by
    # Canonne, Kamath and Steinke (2020), Prop. 12: r + log(1 - 1/a) - log(delta a) / (a - 1).
    hand = min(
        rounds * a / (2 * z**2) + math.log1p(-1 / a) - math.log(delta * a) / (a - 1)
        for a in DEFAULT_RDP_ORDERS
        if a > 1.01
    )
    accountant = PrivacyAccountant(delta)
    for _ in range(rounds):
        epsilon = accountant.compose(z)
    assert epsilon == pytest.approx(hand, rel=1e-9)
    # And it is a valid upper bound: the exact (epsilon, delta) curve of T Gaussians (one
    # Gaussian of multiplier z / sqrt(T); Balle and Wang 2018) gives a smaller delta there.
    mu = math.sqrt(rounds) / z
    exact = norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * norm.cdf(-epsilon / mu - mu / 2)
    assert exact <= delta


@pytest.mark.parametrize("schedule", ["optimised", "static", "reversed"])
def test_plan_spends_exactly_the_budget(schedule):
    budget = PrivacyBudget(epsilon=5.0, delta=0.01, schedule=schedule, contraction=0.9)
    plan = plan_noise_multipliers(budget, num_rounds=30, max_noise_multiplier=1e4)
    assert gaussian_epsilon(plan, 0.01) == pytest.approx(5.0, rel=1e-6)
    if schedule == "optimised":
        assert plan == sorted(plan, reverse=True) and plan[0] > plan[-1]  # less noise late
    elif schedule == "reversed":
        optimised = PrivacyBudget(5.0, 0.01, "optimised", 0.9)
        assert plan == pytest.approx(plan_noise_multipliers(optimised, 30, 1e4)[::-1])
    else:
        assert max(plan) == pytest.approx(min(plan))


def test_plan_caps_noise_at_what_the_link_can_add():
    budget = PrivacyBudget(epsilon=5.0, delta=0.01, schedule="optimised", contraction=0.5)
    plan = plan_noise_multipliers(budget, num_rounds=40, max_noise_multiplier=30.0)
    assert max(plan) == pytest.approx(30.0) and gaussian_epsilon(plan, 0.01) == pytest.approx(5.0)


def test_unreachable_budget_is_refused_with_the_reachable_epsilon():
    budget = PrivacyBudget(epsilon=0.5, delta=0.01, schedule="static")
    reachable = gaussian_epsilon([2.0] * 50, 0.01)
    with pytest.raises(ValueError, match=rf"reachable epsilon is {reachable:.4g}"):
        plan_noise_multipliers(budget, num_rounds=50, max_noise_multiplier=2.0)
    assert reachable > 0.5


def test_accountant_state_round_trips():
    accountant = PrivacyAccountant(0.01)
    for z in (2.0, 3.0, 4.0):
        accountant.compose(z)
    restored = PrivacyAccountant(0.5)
    restored.load_state_dict(accountant.state_dict())
    assert restored.epsilon() == accountant.epsilon() and restored.delta == 0.01
    assert math.isinf(restored.compose(math.inf))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epsilon": 0.0}, "`epsilon`"),
        ({"epsilon": float("nan")}, "`epsilon`"),
        ({"delta": 0.0}, r"`delta` \(0.0\) must be in \(0, 1\)"),
        ({"delta": 1.5}, "`delta`"),
        ({"schedule": "greedy"}, r"`schedule` \('greedy'\) must be one of"),
        ({"contraction": 0.0}, "`contraction`"),
    ],
)
def test_bad_budget_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PrivacyBudget(**kwargs)
