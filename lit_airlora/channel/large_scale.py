"""Large-scale channel models: each client's average SNR (dB) in a round.

The small-scale fading (:mod:`lit_airlora.channel.fading`) has unit average power, so a client's
received SNR per symbol is ``snr_linear * |h|^2``. Models are chosen from YAML by ``class_path``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_airlora.channel.checks import (
    check_finite,
    check_finite_list,
    check_nonnegative,
    check_positive,
)
from lit_airlora.channel.units import lin_to_db
from lit_airlora.init_args import RecordsInitArgs
from lit_airlora.seeding import make_generator

#: 3GPP TR 36.814 / 38.901-style macro path loss: 128.1 + 37.6 log10(d / 1 km) dB.
PATH_LOSS_INTERCEPT_DB = 128.1
PATH_LOSS_SLOPE_DB = 37.6


class LargeScale(RecordsInitArgs):
    """Base class: per-client average SNR in dB for one round."""

    def snr_db(self, client_ids: list[int], generator: torch.Generator) -> Tensor:
        """Average SNR of each client this round.

        Args:
            client_ids: Clients of the round (any order; the result follows it).
            generator: Round-level generator (used only by models that redraw every round).

        Returns:
            ``[K]`` float64 tensor of SNRs in dB, on CPU.
        """
        raise NotImplementedError


class FixedSNR(LargeScale):
    """The same SNR every round: one value for all clients, or a list indexed by client id.

    Args:
        snr_db: SNR in dB: one value for every client, or a list with one value per client
            (a client id beyond the list is an error, never wrapped around).
    """

    def __init__(self, snr_db: float | list[float]) -> None:
        values = [snr_db] if isinstance(snr_db, (int, float)) else list(snr_db)
        check_finite_list("snr_db", values)
        self.values = [float(v) for v in values]

    def snr_db(self, client_ids: list[int], generator: torch.Generator) -> Tensor:
        if len(self.values) == 1:
            return torch.full((len(client_ids),), self.values[0], dtype=torch.float64)
        beyond = [k for k in client_ids if k >= len(self.values)]
        if beyond:
            raise ValueError(
                f"`snr_db` has {len(self.values)} values but client {beyond[0]} takes part: "
                "give one value per client, or a single value for all."
            )
        return torch.tensor([self.values[k] for k in client_ids], dtype=torch.float64)


class UniformSNR(LargeScale):
    """SNR drawn uniformly in ``[low_db, high_db]``.

    With ``per_round=False`` each client's SNR is drawn once, from a generator seeded by
    ``(seed, client_id)``: a client keeps its SNR across rounds and whatever the other clients of
    the round are. With ``per_round=True`` it is redrawn every round from a per-client generator
    seeded by ``(seed, a number drawn from the round generator, client_id)``.

    Args:
        low_db: Lowest SNR in dB.
        high_db: Highest SNR in dB (``>= low_db``).
        seed: Seed of the per-client draws.
        per_round: Redraw every round instead of once per client.
    """

    def __init__(
        self, low_db: float, high_db: float, seed: int = 0, per_round: bool = False
    ) -> None:
        check_finite("low_db", low_db)
        check_finite("high_db", high_db)
        if high_db < low_db:
            raise ValueError(f"`high_db` ({high_db}) must be >= `low_db` ({low_db}).")
        self.low_db, self.high_db = float(low_db), float(high_db)
        self.seed, self.per_round = int(seed), per_round

    def snr_db(self, client_ids: list[int], generator: torch.Generator) -> Tensor:
        keys = _draw_keys(self.seed, self.per_round, generator)
        u = torch.stack(
            [torch.rand((), generator=g, dtype=torch.float64) for g in _gens(keys, client_ids)]
        )
        return self.low_db + (self.high_db - self.low_db) * u


class PathLossSNR(LargeScale):
    """SNR from distance-based path loss: ``P_tx - PL(d) - X - (N_0 + 10 log10 B + NF)`` dB.

    ``PL(d) = 128.1 + 37.6 log10(d / 1 km)`` dB (3GPP TR 36.814 urban macro, as used by most
    federated-learning-over-wireless papers). Clients are uniformly distributed over the annulus
    ``min_distance_m <= d <= max_distance_m`` around the server [assumed], so
    ``d = sqrt(U (d_max^2 - d_min^2) + d_min^2)``; ``X`` is log-normal shadowing with standard
    deviation ``shadowing_std_db`` (0 by default). Draws follow :class:`UniformSNR`: once per
    client (seeded by ``(seed, client_id)``), or every round with ``per_round=True``.

    Args:
        min_distance_m: Smallest client distance in metres (> 0).
        max_distance_m: Largest client distance in metres (>= ``min_distance_m``).
        tx_power_dbm: Client transmit power in dBm.
        bandwidth_hz: Receiver noise bandwidth in Hz (> 0).
        noise_density_dbm_hz: Thermal noise density in dBm/Hz.
        noise_figure_db: Receiver noise figure in dB (>= 0).
        shadowing_std_db: Standard deviation of log-normal shadowing in dB (>= 0).
        seed: Seed of the per-client draws.
        per_round: Redraw positions (and shadowing) every round.
    """

    def __init__(
        self,
        min_distance_m: float,
        max_distance_m: float,
        tx_power_dbm: float,
        bandwidth_hz: float,
        noise_density_dbm_hz: float = -174.0,
        noise_figure_db: float = 0.0,
        shadowing_std_db: float = 0.0,
        seed: int = 0,
        per_round: bool = False,
    ) -> None:
        check_positive("min_distance_m", min_distance_m)
        check_positive("bandwidth_hz", bandwidth_hz)
        check_nonnegative("noise_figure_db", noise_figure_db)
        check_nonnegative("shadowing_std_db", shadowing_std_db)
        check_finite("tx_power_dbm", tx_power_dbm)
        check_finite("noise_density_dbm_hz", noise_density_dbm_hz)
        if not max_distance_m >= min_distance_m:
            raise ValueError(
                f"`max_distance_m` ({max_distance_m}) must be >= `min_distance_m` "
                f"({min_distance_m})."
            )
        self.min_distance_m, self.max_distance_m = float(min_distance_m), float(max_distance_m)
        self.tx_power_dbm, self.shadowing_std_db = float(tx_power_dbm), float(shadowing_std_db)
        self.noise_dbm = noise_power_dbm(bandwidth_hz, noise_density_dbm_hz, noise_figure_db)
        self.seed, self.per_round = int(seed), per_round

    def distance_m(self, client_ids: list[int], generator: torch.Generator) -> Tensor:
        """Client distances (``[K]`` float64, metres) for this round."""
        return self._draw(client_ids, generator)[0]

    def snr_db(self, client_ids: list[int], generator: torch.Generator) -> Tensor:
        distance_m, shadowing_db = self._draw(client_ids, generator)
        return self.tx_power_dbm - path_loss_db(distance_m) - shadowing_db - self.noise_dbm

    def _draw(self, client_ids: list[int], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        keys = _draw_keys(self.seed, self.per_round, generator)
        draws = torch.stack(
            [
                torch.stack(
                    [
                        torch.rand((), generator=g, dtype=torch.float64),
                        torch.randn((), generator=g, dtype=torch.float64),
                    ]
                )
                for g in _gens(keys, client_ids)
            ]
        ).reshape(-1, 2)  # (K, 2)
        d_min2, d_max2 = self.min_distance_m**2, self.max_distance_m**2
        distance_m = torch.sqrt(draws[:, 0] * (d_max2 - d_min2) + d_min2)
        return distance_m, self.shadowing_std_db * draws[:, 1]


def path_loss_db(distance_m: Tensor) -> Tensor:
    """Macro-cell path loss ``128.1 + 37.6 log10(d_km)`` dB of distances in metres."""
    return PATH_LOSS_INTERCEPT_DB + PATH_LOSS_SLOPE_DB * torch.log10(distance_m / 1000.0)


def noise_power_dbm(
    bandwidth_hz: float, noise_density_dbm_hz: float = -174.0, noise_figure_db: float = 0.0
) -> float:
    """Receiver noise power ``N_0 + 10 log10(B) + NF`` in dBm."""
    check_positive("bandwidth_hz", bandwidth_hz)
    return noise_density_dbm_hz + float(lin_to_db(bandwidth_hz)) + noise_figure_db


def _draw_keys(seed: int, per_round: bool, generator: torch.Generator) -> tuple[int, ...]:
    """Keys of the per-client generators: fixed per client, or refreshed from the round."""
    if not per_round:
        return (seed,)
    round_key = int(torch.randint(0, 2**62, (), generator=generator))
    return (seed, round_key)


def _gens(keys: tuple[int, ...], client_ids: list[int]) -> list[torch.Generator]:
    """One generator per client: a client's draw does not depend on the rest of the round."""
    return [make_generator(*keys, int(k)) for k in client_ids]
