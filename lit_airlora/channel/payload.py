"""A client's values as a digital payload: quantised sent entries -> bit stream -> received.

The payload of one client is the concatenation, in the given tensor order, of the codes of the
entries it sends (every tensor the aggregator trains), each ``bits_per_value`` bits MSB first,
followed by the quantiser's per-tensor side information (scales) and by the sparsity index of a
sparsifying encoder (its size given by the caller).
Side information and index are assumed to reach the server error-free (a protected control
field [assumed]): their bits are counted and cost airtime, but the server uses the sender's
scales and masks. Values whose bits touch a lost block are missing: zero in the received tensor
and removed from its mask; so are values a corrupted float code turns non-finite.

Where a client sends a tensor's active-rank block (rows of A, columns of B), its entries are
given as slices, gathered and scattered without boolean indexing; a sparsifying encoder's as a
mask. All of a client's values are quantised in one pass (one segment per tensor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lit_airlora.channel.quantize import QuantizedSegments, Quantizer, pack_bits

#: Where a tensor's sent entries are: a tuple of slices (active-rank block) or a bool mask.
EntryIndex = tuple[slice, ...] | Tensor


@dataclass
class EncodedPayload:
    """The quantised payload of one client.

    Attributes:
        names: Tensors sent, in payload order.
        indices: Per name, where its sent entries are (slices of a block, or a bool mask).
        quantized: Codes of all sent entries (payload order) and one scale per tensor.
        bits_per_value: Bits per code.
        payload_bits: Bits on the air: codes, side information and the sparsity index.
    """

    names: list[str]
    indices: list[EntryIndex]
    quantized: QuantizedSegments
    bits_per_value: int
    payload_bits: int

    @property
    def num_values(self) -> int:
        return int(self.quantized.codes.numel())

    @property
    def counts(self) -> list[int]:
        """Values sent per tensor, in payload order."""
        return self.quantized.counts

    def codes(self) -> Tensor:
        """``[num_values]`` int64 codes of all sent entries, in payload order."""
        return self.quantized.codes


def encode_values(
    tensors: Mapping[str, Tensor],
    indices: Sequence[EntryIndex],
    names: Sequence[str],
    quantizer: Quantizer,
    generator: torch.Generator,
    index_bits: int = 0,
) -> EncodedPayload:
    """Quantise the sent entries of ``names`` (a per-tensor scale each) in one pass.

    Args:
        tensors: Name -> values (float32, any shape).
        indices: Per name in ``names``, where its sent entries are (slices or a bool mask).
        names: Tensors sent, in payload order.
        quantizer: Source coder.
        generator: Draws of a stochastic quantiser.
        index_bits: Bits of a sparsifying encoder's index (they cost airtime, arrive error-free).
    """
    parts = [tensors[n][i].reshape(-1) for n, i in zip(names, indices, strict=True)]
    counts = [p.numel() for p in parts]
    values = torch.cat(parts) if parts else torch.zeros(0)
    quantized = quantizer.quantize_segments(values, counts, generator)
    side_bits = quantizer.payload_bits(sum(counts), len(names))
    return EncodedPayload(
        names=list(names),
        indices=list(indices),
        quantized=quantized,
        bits_per_value=quantizer.bits_per_value,
        payload_bits=side_bits + int(index_bits),
    )


def payload_bitstream(encoded: EncodedPayload) -> Tensor:
    """``[payload_bits]`` uint8: the packed codes, then the side information and index fields."""
    codes = pack_bits(encoded.codes(), encoded.bits_per_value)
    side = encoded.payload_bits - codes.numel()
    # The side-information and index fields only cost airtime (their content travels error-free).
    return torch.cat([codes, torch.zeros(side, dtype=torch.uint8, device=codes.device)])


def decode_values(
    tensors: Mapping[str, Tensor],
    masks: Mapping[str, Tensor],
    encoded: EncodedPayload,
    quantizer: Quantizer,
    value_ok: Tensor,
    received_codes: Tensor | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The values and sent masks as the server received them (new dicts; inputs unchanged).

    Args:
        tensors: The values as sent (name -> tensor); names not in ``encoded`` are kept.
        masks: Explicit sent masks of the sender (name -> bool tensor); kept where not sent.
        encoded: The payload (:func:`encode_values`).
        quantizer: The quantiser that produced ``encoded``.
        value_ok: ``[num_values]`` bool, values whose blocks arrived.
        received_codes: ``[num_values]`` int64 codes as received (with bit errors), or ``None``
            when received blocks are exact.

    Returns:
        ``(tensors, masks)``: received values (zero where missing) and, per sent name, the mask
        of the entries that arrived.
    """
    sent = encoded.quantized
    codes = sent.codes if received_codes is None else received_codes.to(sent.codes.device)
    values = quantizer.dequantize_segments(QuantizedSegments(codes, sent.scales, sent.counts))
    ok = value_ok.to(values.device) & torch.isfinite(values)
    values = torch.where(ok, values, torch.zeros_like(values))
    received, received_masks = dict(tensors), dict(masks)
    parts = zip(
        encoded.names, encoded.indices, values.split(sent.counts), ok.split(sent.counts),
        strict=True,
    )  # fmt: skip
    for name, index, arrived, arrived_ok in parts:
        like = tensors[name]
        received[name] = _scatter(torch.zeros_like(like), index, arrived.to(like.dtype))
        received_masks[name] = _scatter(torch.zeros_like(like, dtype=torch.bool), index, arrived_ok)
    return received, received_masks


def _scatter(out: Tensor, index: EntryIndex, values: Tensor) -> Tensor:
    """``out`` with ``values`` (flat, row-major) written at ``index``."""
    if isinstance(index, Tensor):
        out[index.to(out.device)] = values
    else:
        block = out[index]
        block.copy_(values.view(block.shape))
    return out
