"""The common interface of digital links: payload bits in, a report of what arrived out.

A link carries each client's payload, a bit stream, on the client's own resources (OFDMA/FDMA
or TDMA) in blocks: block ``b`` carries payload bits ``[b * block_bits, (b + 1) * block_bits)``,
the last one zero-padded. A block whose check fails is retransmitted up to
``max_retransmissions`` times and then dropped. Links are chosen from YAML by ``class_path``;
two fidelities exist: :class:`~lit_airlora.channel.bit_level.BitLevelLink` (real bits through
Sionna's LDPC/QAM chain) and :class:`~lit_airlora.channel.abstraction.AbstractionLink` (Sionna's
PHY abstraction: block errors drawn from SINR -> BLER tables).

Conventions shared by both: ``snr_db`` is the client's mean symbol SNR ``E_s / N_0`` per receive
antenna, the fading ``h`` has unit mean power, so the noise variance per complex dimension is
``N_0 = 10^(-snr_db / 10)`` for unit-energy symbols on every stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from lit_airlora.init_args import RecordsInitArgs


@dataclass
class LinkReport:
    """What one :meth:`DigitalLink.transmit` call delivered, per client (``K`` clients).

    Attributes:
        block_ok: Per client, ``[num_blocks]`` bool: block finally received (CRC passed).
        block_bits: Per client, payload bits carried by one block.
        received_bits: Per client, the received payload ``[payload_bits]`` uint8 (bit errors
            that slipped past the CRC included), or ``None`` when received blocks are exact
            (the abstraction does not simulate bits).
        bits_offered: ``[K]`` float64, payload bits handed to the link.
        bits_delivered: ``[K]`` float64, payload bits in received blocks.
        block_transmissions: ``[K]`` int64, block transmissions including retransmissions.
        block_errors: ``[K]`` int64, failed block transmissions (recovered later or not).
        retransmissions: ``[K]`` int64, block transmissions beyond the first per block.
        airtime_s: ``[K]`` float64, airtime of all transmissions.
        energy_j: ``[K]`` float64, transmit energy of all transmissions.
        channel_bit_errors: ``[K]`` int64, hard-decision errors of the coded bits before
            decoding (bit level only, else zero).
        channel_bits: ``[K]`` int64, coded bits behind ``channel_bit_errors``.
        extras: Link-specific per-client ``[K]`` tensors (``mcs_index``, ``sinr_eff_db``...).
    """

    block_ok: list[Tensor]
    block_bits: list[int]
    received_bits: list[Tensor | None]
    bits_offered: Tensor
    bits_delivered: Tensor
    block_transmissions: Tensor
    block_errors: Tensor
    retransmissions: Tensor
    airtime_s: Tensor
    energy_j: Tensor
    channel_bit_errors: Tensor
    channel_bits: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def concat(cls, reports: Sequence[LinkReport]) -> LinkReport:
        """One report of the clients of ``reports``, in order (per-client links joined)."""
        values = {}
        for f in fields(cls):
            parts = [getattr(r, f.name) for r in reports]
            if f.name == "extras":
                values[f.name] = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            elif isinstance(parts[0], list):
                values[f.name] = [x for part in parts for x in part]
            else:
                values[f.name] = torch.cat(parts)
        return cls(**values)

    def blocks_dropped(self) -> Tensor:
        """``[K]`` int64: blocks lost after all retransmissions."""
        return torch.tensor([int((~ok).sum()) for ok in self.block_ok], dtype=torch.int64)

    def delivered_fraction(self) -> Tensor:
        """``[K]`` float64: share of the offered bits that arrived (1 for an empty payload)."""
        return torch.where(
            self.bits_offered > 0,
            self.bits_delivered / self.bits_offered.clamp(min=1.0),
            torch.ones_like(self.bits_offered),
        )


class DigitalLink(RecordsInitArgs):
    """Base class of digital links (see the module docstring for the conventions).

    Attributes:
        corrupts_bits: Whether :meth:`transmit` needs the payload bits themselves (bit-level
            simulation) or only their number.
    """

    corrupts_bits: bool = False

    def setup(self, device: torch.device | str) -> None:
        """Build the Sionna blocks on ``device`` (idempotent)."""

    def transmit(
        self,
        payloads: Sequence[Tensor | int],
        snr_db: Tensor,
        fading: Tensor,
        generator: torch.Generator | Sequence[torch.Generator],
        bandwidth_shares: Tensor | None = None,
    ) -> LinkReport:
        """Send one payload per client.

        Args:
            payloads: Per client, the payload bits ``[L_k]`` (uint8 0/1) or, for links with
                ``corrupts_bits = False``, just their number ``L_k``.
            snr_db: ``[K]`` mean SNR per client in dB.
            fading: ``[K, num_rx, num_tx, num_subcarriers]`` complex, one block per client.
            generator: Source of all randomness (noise, block errors), or one generator per
                client (client ``k``'s draws then come from ``generator[k]`` alone, so its
                outcome does not depend on the other clients of the call).
            bandwidth_shares: ``[K]`` FDMA shares of the link's band (sum <= 1), e.g. TSFA's,
                with ``snr_db`` then the full-band SNR; ``None``: each client has the whole
                configured allocation. Links that do not model shares raise.

        Returns:
            The :class:`LinkReport`.
        """
        raise NotImplementedError


def noise_variance(snr_db: Tensor) -> Tensor:
    """Noise variance per complex dimension ``N_0 = 10^(-snr_db / 10)`` for unit-energy symbols."""
    from sionna.phy.utils import db_to_lin  # lazy: Sionna costs seconds to import

    return db_to_lin(-snr_db, precision="double")


def client_generators(
    generator: torch.Generator | Sequence[torch.Generator], num_clients: int
) -> list[torch.Generator]:
    """One generator per client: the shared one ``num_clients`` times, or the given list."""
    if isinstance(generator, torch.Generator):
        return [generator] * num_clients
    generators = list(generator)
    if len(generators) != num_clients:
        raise ValueError(
            f"`generator` has {len(generators)} entries; expected one per client ({num_clients})."
        )
    return generators


def payload_length(payload: Tensor | int) -> int:
    """Number of bits of a payload given as bits or as a count."""
    return int(payload.numel()) if isinstance(payload, Tensor) else int(payload)


def check_link_inputs(payloads: Sequence, snr_db: Tensor, fading: Tensor) -> None:
    """Shapes of :meth:`DigitalLink.transmit` arguments agree on the number of clients."""
    num_clients = len(payloads)
    if snr_db.shape != (num_clients,):
        raise ValueError(f"`snr_db` has shape {tuple(snr_db.shape)}; expected ({num_clients},).")
    if fading.dim() != 4 or fading.shape[0] != num_clients:
        raise ValueError(
            f"`fading` has shape {tuple(fading.shape)}; expected "
            f"({num_clients}, num_rx, num_tx, num_subcarriers)."
        )


def received_value_mask(
    block_ok: Tensor, block_bits: int, num_values: int, bits_per_value: int
) -> Tensor:
    """``[num_values]`` bool: values whose bits all lie in received blocks.

    Value ``i`` occupies payload bits ``[i q, (i + 1) q)``, so lost block ``b`` (bits
    ``[b B, (b + 1) B)``) takes out values ``floor(b B / q)`` to ``ceil((b + 1) B / q) - 1``.
    Those ranges are marked with a difference array: the work is one pass over the values plus
    one step per lost block, with no per-value block lookup.
    """
    if bits_per_value > block_bits:
        raise ValueError(
            f"`bits_per_value` ({bits_per_value}) must be <= `block_bits` ({block_bits})."
        )
    lost = torch.nonzero(~block_ok.bool()).reshape(-1).to(torch.int64)
    device = block_ok.device
    if lost.numel() == 0:
        return torch.ones(num_values, dtype=torch.bool, device=device)
    first = (lost * block_bits // bits_per_value).clamp(max=num_values)
    end = (((lost + 1) * block_bits + bits_per_value - 1) // bits_per_value).clamp(max=num_values)
    delta = torch.zeros(num_values + 1, dtype=torch.int32, device=device)
    ones = torch.ones_like(first, dtype=torch.int32)
    delta.index_add_(0, first, ones).index_add_(0, end, -ones)
    return delta.cumsum(0, dtype=torch.int32)[:num_values] == 0


def delivered_bits(block_ok: Tensor, block_bits: int, payload_bits: int) -> float:
    """Payload bits in received blocks (the zero-padded last block counts only its payload)."""
    if len(block_ok) == 0:
        return 0.0
    last = payload_bits - block_bits * (len(block_ok) - 1)
    return float(int(block_ok[:-1].sum()) * block_bits + int(block_ok[-1]) * last)
