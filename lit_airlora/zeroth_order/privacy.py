"""Differential privacy of scalar uploads over the air: budgets, noise schedules, accountant.

Each round the server receives ``y = c_t sum_k g_k + n`` over ``S`` channel uses, with
``g_k in [-gamma, gamma]^S`` and Gaussian noise of standard deviation ``sigma_t`` per use (receiver
noise plus artificial noise). Changing one client's data moves ``y`` by at most
``2 c_t gamma sqrt(S)`` in L2 norm, so the round is a Gaussian mechanism with noise multiplier
``z_t = sigma_t / (2 c_t gamma sqrt(S))``. Rounds compose; the accountant is Google's
``dp-accounting`` (Renyi DP, Mironov 2017, with its conversion to (epsilon, delta)).

A Gaussian mechanism with multiplier ``z`` costs ``rho = 1 / (2 z^2)`` in Renyi DP at every order
scaled the same way, so a run's privacy depends on ``sum_t rho_t`` only, and a schedule decides how
that total is spread over rounds:

- ``optimised``: ``rho_t`` proportional to ``q^((T - t) / 2)``: more signal late. It minimises
  ``sum_t q^(T - t) / rho_t`` (the noise each round leaves in the final iterate when every round
  contracts the optimality gap by ``q``, a PL-type bound) at fixed ``sum_t rho_t`` [assumed: the
  paper states only that the optimised schedule spends more late].
- ``static``: equal ``rho_t``.
- ``reversed``: the optimised schedule mirrored in time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from lit_airlora.channel.checks import check_positive

#: Per-round weights ``w_t`` (t = 0 .. T-1) of the privacy spending, by schedule name.
SCHEDULES: dict[str, Callable[[int, float], list[float]]] = {
    "optimised": lambda T, q: [q ** ((T - 1 - t) / 2) for t in range(T)],
    "static": lambda T, q: [1.0] * T,
    "reversed": lambda T, q: [q ** (t / 2) for t in range(T)],
}


class PrivacyBudget:
    """An (epsilon, delta) target for a whole run and how to spend it over rounds.

    Args:
        epsilon: Target epsilon (> 0).
        delta: Target delta, in ``(0, 1)``.
        schedule: ``"optimised"``, ``"static"`` or ``"reversed"`` (see the module docstring).
        contraction: ``q`` in ``(0, 1]`` of the optimised schedule (``1``: static).
    """

    def __init__(
        self,
        epsilon: float = 5.0,
        delta: float = 0.01,
        schedule: str = "optimised",
        contraction: float = 0.99,
    ) -> None:
        check_positive("epsilon", epsilon)
        if not (isinstance(delta, (int, float)) and 0 < delta < 1):
            raise ValueError(f"`delta` ({delta!r}) must be in (0, 1), e.g. 0.01.")
        if schedule not in SCHEDULES:
            raise ValueError(
                f"`schedule` ({schedule!r}) must be one of {sorted(SCHEDULES)}; pick one of them."
            )
        if not (isinstance(contraction, (int, float)) and 0 < contraction <= 1):
            raise ValueError(f"`contraction` ({contraction!r}) must be in (0, 1].")
        self.epsilon, self.delta = float(epsilon), float(delta)
        self.schedule, self.contraction = schedule, float(contraction)

    def weights(self, num_rounds: int) -> list[float]:
        return SCHEDULES[self.schedule](num_rounds, self.contraction)


def rdp_accountant():
    """A fresh ``dp-accounting`` Renyi-DP accountant (default orders)."""
    from dp_accounting.rdp import rdp_privacy_accountant

    return rdp_privacy_accountant.RdpAccountant()


def gaussian_event(noise_multiplier: float):
    from dp_accounting import dp_event

    return dp_event.GaussianDpEvent(float(noise_multiplier))


def gaussian_epsilon(noise_multipliers: Sequence[float], delta: float) -> float:
    """Epsilon at ``delta`` of the composition of Gaussian mechanisms (``dp-accounting`` RDP)."""
    accountant = rdp_accountant()
    for z in noise_multipliers:
        accountant.compose(gaussian_event(z))
    return float(accountant.get_epsilon(delta))


def total_rho(epsilon: float, delta: float) -> float:
    """The largest ``sum_t rho_t`` whose composition meets ``(epsilon, delta)`` (bisection)."""
    low, high = 1e-12, 1e6
    for _ in range(45):  # the bracket's ratio shrinks to 1 + 1e-9
        mid = math.sqrt(low * high)
        if gaussian_epsilon([1.0 / math.sqrt(2.0 * mid)], delta) <= epsilon:
            low = mid
        else:
            high = mid
    return low


def plan_noise_multipliers(
    budget: PrivacyBudget, num_rounds: int, max_noise_multiplier: float
) -> list[float]:
    """Per-round noise multipliers that spend ``budget`` along its schedule.

    Rounds whose share would need more noise than the link can add (``max_noise_multiplier``)
    get that maximum, and the others share the rest (water-filling on the schedule's weights).

    Raises:
        ValueError: when even the most noise in every round exceeds the budget; the message gives
            the reachable epsilon.
    """
    rho_min = 1.0 / (2.0 * max_noise_multiplier**2)
    rho = total_rho(budget.epsilon, budget.delta)
    if num_rounds * rho_min > rho:
        reachable = gaussian_epsilon([max_noise_multiplier] * num_rounds, budget.delta)
        raise ValueError(
            f"`epsilon` ({budget.epsilon}) at `delta` ({budget.delta}) cannot be met in "
            f"{num_rounds} rounds: with the most noise the link can add (noise multiplier "
            f"{max_noise_multiplier:.4g} per round) the reachable epsilon is {reachable:.4g}. "
            "Raise `epsilon`, run fewer rounds, allow more artificial noise "
            "(`max_artificial_noise_db`) or lower the transmit scaling."
        )
    weights = budget.weights(num_rounds)
    scale = _water_fill(weights, rho, rho_min)
    return [1.0 / math.sqrt(2.0 * max(scale * w, rho_min)) for w in weights]


def _water_fill(weights: Sequence[float], total: float, floor: float) -> float:
    """``s`` with ``sum_t max(s w_t, floor) = total`` (bisection; the sum grows with ``s``)."""
    low, high = 0.0, total / min(weights)
    for _ in range(200):
        mid = 0.5 * (low + high)
        if sum(max(mid * w, floor) for w in weights) > total:
            high = mid
        else:
            low = mid
    return low


class PrivacyAccountant:
    """The run's realised privacy: one Gaussian mechanism per round, composed.

    State is the list of realised noise multipliers (builtins, checkpointed).

    Args:
        delta: Delta at which epsilon is reported.
    """

    def __init__(self, delta: float) -> None:
        self.delta = float(delta)
        self._reset([])

    def compose(self, noise_multiplier: float) -> float:
        """Add one round; returns epsilon so far (``inf`` once a round was noise-free)."""
        z = float(noise_multiplier)
        self.noise_multipliers.append(z)
        if z > 0 and math.isfinite(z):
            self._accountant.compose(gaussian_event(z))
        else:
            self._noise_free = True
        return self.epsilon()

    def epsilon(self) -> float:
        if self._noise_free:
            return math.inf
        return float(self._accountant.get_epsilon(self.delta)) if self.noise_multipliers else 0.0

    def _reset(self, noise_multipliers: list[float]) -> None:
        self.noise_multipliers: list[float] = []
        self._accountant, self._noise_free = rdp_accountant(), False
        for z in noise_multipliers:
            self.compose(z)

    def state_dict(self) -> dict:
        return {"delta": self.delta, "noise_multipliers": list(self.noise_multipliers)}

    def load_state_dict(self, state: dict) -> None:
        self.delta = float(state["delta"])
        self._reset([float(z) for z in state["noise_multipliers"]])
