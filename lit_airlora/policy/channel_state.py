"""Where a rank policy's channel state comes from: a channel callback, or a large-scale model."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_airlora.channel.large_scale import LargeScale
from lit_airlora.channel.seeding import make_generator

#: Key mixed into the large-scale SNR generator seed (other users of the run seed use others).
_SNR_STREAM = 0x5E1EC7


class ChannelState:
    """The round's per-client SNR (dB) and the link bandwidth, for policy observations.

    A channel callback in ``trainer.callbacks`` takes precedence: one that exposes
    ``round_snr_db(round_idx)`` (``[K]`` dB of the round's clients, or None while not drawn yet,
    in which case the previous round's is used), or one that keeps a ``history`` of per-round
    records with ``"round"`` and ``"snr_db"`` (``OverTheAirAggregation``: the channel is drawn at
    upload time, so the policy sees the latest drawn round, i.e. the previous one); its
    ``bandwidth_hz`` is used unless given here. Before the channel reports anything (round 0),
    or without a channel callback, ``large_scale`` (else the channel callback's own
    ``large_scale``, as a prior) draws the SNRs from a generator seeded by ``(seed, round)`` for
    the clients of ``datamodule.schedule.clients(round)`` (client 0 alone without a schedule:
    one edge device), so every DDP rank and a resumed run see the same values.

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
        return getattr(channel_callback(trainer), "bandwidth_hz", None)

    def snr_db(self, trainer, round_idx: int) -> Tensor | None:
        """``[K]`` float64 SNRs in dB of the round's clients, or None without a source."""
        channel = channel_callback(trainer)
        snr_db = None if channel is None else callback_snr_db(channel, round_idx)
        if snr_db is not None:
            return torch.as_tensor(snr_db, dtype=torch.float64).reshape(-1).cpu()
        model = self.large_scale or getattr(channel, "large_scale", None)
        if model is None:
            return None
        generator = make_generator(self.seed, _SNR_STREAM, round_idx)
        return model.snr_db(round_clients(trainer, round_idx), generator)


def channel_callback(trainer):
    """The first callback exposing ``round_snr_db`` or an SNR ``history``, or None."""
    callbacks = trainer.callbacks if trainer is not None else []
    return next((c for c in callbacks if _reports_snr(c)), None)


def _reports_snr(callback) -> bool:
    history = getattr(callback, "history", None)
    return callable(getattr(callback, "round_snr_db", None)) or (
        isinstance(history, list) and hasattr(callback, "large_scale")
    )


def callback_snr_db(channel, round_idx: int):
    """SNRs of ``round_idx`` (else of the latest earlier round) reported by ``channel``."""
    if callable(getattr(channel, "round_snr_db", None)):
        for idx in (round_idx, round_idx - 1):
            snr_db = channel.round_snr_db(idx) if idx >= 0 else None
            if snr_db is not None:
                return snr_db
        return None
    records = [r for r in channel.history if "snr_db" in r and r.get("round", -1) <= round_idx]
    return max(records, key=lambda r: r["round"])["snr_db"] if records else None


def round_clients(trainer, round_idx: int) -> list[int]:
    """The round's clients from the datamodule's schedule (``[0]``: a single edge device)."""
    schedule = getattr(getattr(trainer, "datamodule", None), "schedule", None)
    return list(schedule.clients(round_idx)) if schedule is not None else [0]
