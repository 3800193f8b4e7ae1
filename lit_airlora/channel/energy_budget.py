"""A fixed energy budget per round for over-the-air aggregation (AirFL-LoRA's rank trade-off).

With a budget of ``N`` OFDM symbols at full power, a payload of ``D`` reals on ``S`` streams and
``M`` subcarriers gets ``2 S M N / D`` times the energy per value of a payload that fills the
budget exactly: a longer payload (a larger LoRA rank) leaves less energy per value and a larger
aggregation error, a shorter one can spend the spare energy (repetition, power boosting). The
effect on the estimate is that of an SNR shifted by ``10 log10(2 S M N / D)`` dB, which is how the
callback applies it; the rank policy's MSE models assume the same scaling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lit_airlora.channel.large_scale import LargeScale
from lit_airlora.federated.upload import RoundContext, module_of


class ShiftedSNR(LargeScale):
    """``base`` with every SNR shifted by ``shift_db`` (the energy per value of one round).

    Args:
        base: The large-scale model whose draws are shifted.
        shift_db: Shift in dB (negative: less energy per value).
    """

    def __init__(self, base: LargeScale, shift_db: float) -> None:
        self.base, self.shift_db = base, float(shift_db)

    def snr_db(self, client_ids: list[int], generator: torch.Generator) -> Tensor:
        return self.base.snr_db(client_ids, generator) + self.shift_db


def payload_reals(ctx: RoundContext, names: Sequence[str]) -> int:
    """Reals of the round's superposed payload: per tensor, the largest active block sent.

    The largest rank per module is found from rank counts summed over DDP ranks, so every
    rank computes the same payload length.
    """
    modules = sorted({module_of(n) for n in names})
    max_rank = int(ctx.global_adapter[f"{modules[0]}.lora_A"].shape[0])
    counts = torch.zeros(len(modules), max_rank + 1, dtype=torch.float64)  # (modules, ranks)
    for upload in ctx.uploads:
        for i, module in enumerate(modules):
            counts[i, upload.ranks[module]] += 1
    counts = ctx.reduce({"rank_counts": counts})["rank_counts"]
    ranks = {m: int(torch.nonzero(counts[i]).max()) for i, m in enumerate(modules)}
    total = 0
    for name in names:
        rows, cols = ctx.global_adapter[name].shape
        rank = ranks[module_of(name)]
        total += rank * cols if name.endswith("lora_A") else rows * rank
    return total


def energy_shift_db(
    budget_symbols: int, num_streams: int, num_subcarriers: int, reals: int
) -> float:
    """``10 log10(2 S M N / D)``: the SNR change of a ``D``-real payload under the budget."""
    if reals <= 0:
        return 0.0
    return 10.0 * math.log10(2.0 * num_streams * num_subcarriers * budget_symbols / reals)
