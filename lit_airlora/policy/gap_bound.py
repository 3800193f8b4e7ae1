"""AirFL-LoRA's optimality-gap bound as a function of the LoRA ranks (our reconstruction).

Sun et al., "Federated Low-Rank Adaptation for Large Models Fine-Tuning Over Wireless Networks"
(IEEE TWC 2025) bound the optimality gap by an optimisation term, the SGD variance over ``K``,
the aggregation distortion ``L eta MSE(r, A, F) / K^2`` and a truncation term ``Phi(r)`` that
falls with the rank. Only the abstract is public; the form of each term is ours [assumed]:

- ``Phi(r) = sum_l sum_{i >= r_l} sigma_{l,i}^2``: the energy of the current global update that
  rank ``r_l`` truncates (spectrum from :func:`lit_airlora.policy.spectrum.update_spectrum`).
- ``MSE(r) = p * u * D(r)^2 / D_full``: a payload of ``D(r) = sum_l r_l (d_in,l + d_out,l)``
  reals under a fixed channel-use budget that carries ``D_full`` reals at full power. Each value
  gets the energy ``E / D(r)``, so its MSE is ``u D(r) / D_full`` (``u``: per-value MSE of the
  sum at full power, normalised units, from the beamformer), times the mean squared value ``p``
  that de-normalisation multiplies back; summed over the ``D(r)`` values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def payload_values(ranks: Tensor, values_per_rank: Tensor) -> Tensor:
    """``D(r) = sum_l r_l v_l`` reals (``ranks``, ``values_per_rank``: ``[L]``), float64."""
    return (ranks.double() * values_per_rank.double()).sum()


def truncation_error(ranks: Tensor, tail: Tensor) -> Tensor:
    """``Phi(r) = sum_l tail[l, r_l]`` (``tail``: ``[L, R + 1]`` from ``tail_energy``)."""
    return tail.gather(1, ranks.long()[:, None]).sum()


def aggregation_mse(
    num_values: Tensor, full_values: float, unit_mse: float, value_power: float
) -> Tensor:
    """Total MSE of the aggregated sum: ``value_power * unit_mse * D^2 / full_values``."""
    return value_power * unit_mse * num_values.double().square() / full_values


@dataclass(frozen=True)
class GapBound:
    """The bound for one round's channel and spectrum, evaluated at any ranks.

    Attributes:
        values_per_rank: ``[L]`` reals one rank costs per module (``d_in + d_out``; ``d_out``
            when only B is sent, as under FFA-LoRA).
        tail: ``[L, R + 1]`` truncated energy per module and rank.
        unit_mse: Per-value MSE of the sum at full power (normalised units).
        full_values: Reals the channel-use budget carries at full power.
        value_power: Mean squared value of one client's update.
        num_clients: ``K``, participating clients.
        lipschitz: Smoothness constant ``L`` of the loss.
        lr: Learning rate ``eta``.
        opt_term: Optimisation term (rank-independent).
        variance: SGD variance (divided by ``K``; rank-independent).
        truncation_weight: Weight of ``Phi`` (its constant in the bound).
    """

    values_per_rank: Tensor
    tail: Tensor
    unit_mse: float
    full_values: float
    value_power: float
    num_clients: int
    lipschitz: float = 1.0
    lr: float = 1.0
    opt_term: float = 0.0
    variance: float = 0.0
    truncation_weight: float = 1.0

    def terms(self, ranks: Tensor) -> dict[str, Tensor]:
        """Every term of the bound at ``ranks`` (``[L]`` int) and their sum ``gap``, float64."""
        num_values = payload_values(ranks, self.values_per_rank)
        mse = aggregation_mse(num_values, self.full_values, self.unit_mse, self.value_power)
        out = {
            "optimisation": torch.tensor(self.opt_term, dtype=torch.float64),
            "variance": torch.tensor(self.variance / self.num_clients, dtype=torch.float64),
            "distortion": self.lipschitz * self.lr * mse / self.num_clients**2,
            "truncation": self.truncation_weight * truncation_error(ranks, self.tail),
        }
        out["gap"] = sum(out.values())
        out["mse"] = mse
        out["payload_values"] = num_values
        return out

    def __call__(self, ranks: Tensor) -> float:
        return float(self.terms(ranks)["gap"])
