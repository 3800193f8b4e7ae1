"""Per-client full-band SNR for a round, from the channel's large- and small-scale models."""

from __future__ import annotations

from torch import Tensor

from lit_airlora.channel.fading import SmallScale
from lit_airlora.channel.large_scale import LargeScale
from lit_airlora.seeding import make_generator


def full_band_snr(
    large_scale: LargeScale,
    small_scale: SmallScale | None,
    clients: list[int],
    keys: tuple[int, ...],
) -> Tensor:
    """``snr_k = 10^(snr_db_k / 10) * mean |h_k|^2``: ``[K]`` float64, linear.

    The mean of ``|h|^2`` over the block's antennas and subcarriers is the client's effective
    power gain on its FDMA share [assumed]. Draws come from generators seeded by ``keys`` (and
    the client id for the fading), so every rank and a resumed run get the same values.

    Args:
        large_scale: Mean SNR per client (dB).
        small_scale: Unit-power block fading, or ``None`` for the mean channel (``|h|^2 = 1``).
        clients: Client ids of the round.
        keys: Integer keys of the round's draws, e.g. ``(seed, round_idx)``.
    """
    from sionna.phy.utils import db_to_lin  # lazy: Sionna costs seconds to import

    snr = db_to_lin(large_scale.snr_db(clients, make_generator(*keys)), precision="double")
    if small_scale is None:
        return snr
    fading = small_scale.draw_clients(clients, keys)  # (K, rx, tx, subcarriers)
    return snr * fading.abs().square().double().flatten(1).mean(dim=1)
