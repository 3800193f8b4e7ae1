"""Where a rank policy's channel state comes from: a channel callback, or a large-scale model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lit_airlora.channel.large_scale import LargeScale
from lit_airlora.seeding import make_generator

if TYPE_CHECKING:
    from lit_airlora.federated.plan import RoundPlan

#: Key mixed into the large-scale SNR generator seed (other users of the run seed use others).
_SNR_STREAM = 0x5E1EC7


class SNRReporter(ABC):
    """A channel callback that reports the per-client SNRs it uses (rank policies read them).

    Attributes:
        large_scale: Its large-scale SNR model (a prior before anything is drawn).
    """

    large_scale: LargeScale

    @abstractmethod
    def round_snr_db(self, round_idx: int, plan: RoundPlan | None = None) -> Tensor | None:
        """``[K]`` SNRs in dB of round ``round_idx``'s clients (sorted ids), or None if unknown.

        Args:
            round_idx: The round.
            plan: The round's plan when known (its seed and clients), for links whose draws
                follow from them before the round is transmitted.
        """

    def reported_bandwidth_hz(self) -> float | None:
        """The link's bandwidth in Hz, or None when it has none to report."""
        return None


class ChannelState:
    """The round's per-client SNR (dB) and the link bandwidth, for policy observations.

    A :class:`SNRReporter` callback in ``trainer.callbacks`` takes precedence: its SNRs of the
    round (or, while not drawn yet, of the previous round) and its bandwidth unless given here.
    Before the channel reports anything (round 0), or without a reporter, ``large_scale`` (else
    the reporter's own ``large_scale``, as a prior) draws the SNRs from a generator seeded by
    ``(seed, round)`` for the plan's clients (client 0 alone without a plan: one edge device),
    so every DDP rank and a resumed run see the same values.

    Args:
        large_scale: Large-scale SNR model (``FixedSNR``, ``UniformSNR``, ``PathLossSNR``).
        bandwidth_hz: Bandwidth in Hz (overrides the channel callback's).
        seed: Seed of the ``large_scale`` draws.
    """

    def __init__(
        self, large_scale: LargeScale | None, bandwidth_hz: float | None, seed: int
    ) -> None:
        self.large_scale, self._bandwidth_hz, self.seed = large_scale, bandwidth_hz, seed

    def has_snr(self, trainer) -> bool:
        return self.large_scale is not None or channel_callback(trainer) is not None

    def bandwidth_hz(self, trainer) -> float | None:
        if self._bandwidth_hz is not None:
            return self._bandwidth_hz
        channel = channel_callback(trainer)
        return None if channel is None else channel.reported_bandwidth_hz()

    def snr_db(self, trainer, round_idx: int, plan: RoundPlan | None = None) -> Tensor | None:
        """``[K]`` float64 SNRs in dB of the round's clients, or None without a source."""
        channel = channel_callback(trainer)
        snr_db = None if channel is None else callback_snr_db(channel, round_idx, plan)
        if snr_db is not None:
            return torch.as_tensor(snr_db, dtype=torch.float64).reshape(-1).cpu()
        model = self.large_scale or getattr(channel, "large_scale", None)
        if model is None:
            return None
        generator = make_generator(self.seed, _SNR_STREAM, round_idx)
        return model.snr_db(round_clients(plan), generator)


def channel_callback(trainer) -> SNRReporter | None:
    """The first :class:`SNRReporter` of ``trainer.callbacks``, or None."""
    callbacks = trainer.callbacks if trainer is not None else []
    return next((c for c in callbacks if isinstance(c, SNRReporter)), None)


def callback_snr_db(channel: SNRReporter, round_idx: int, plan: RoundPlan | None = None):
    """SNRs of ``round_idx``, else of the previous round, reported by ``channel``."""
    snr_db = channel.round_snr_db(round_idx, plan)
    if snr_db is None and round_idx > 0:
        snr_db = channel.round_snr_db(round_idx - 1)
    return snr_db


def round_clients(plan: RoundPlan | None) -> list[int]:
    """The round's clients from its plan (``[0]`` without one: a single edge device)."""
    return list(plan.clients) if plan is not None else [0]
