"""An upload as a digital payload: quantised sent entries -> bit stream -> received upload.

The payload of one client is the concatenation, in the upload's tensor order, of the codes of
the entries it sends (``upload.sent_mask(name)`` of every tensor the aggregator trains), each
``bits_per_value`` bits MSB first, followed by the quantiser's per-tensor side information
(scales) and by the sparsity index of a sparsifying encoder (``upload.meta["index_bits"]``).
Side information and index are assumed to reach the server error-free (a protected control
field [assumed]): their bits are counted and cost airtime, but the server uses the sender's
scales and masks. Values whose bits touch a lost block are missing: zero in the received tensor
and removed from its mask; so are values a corrupted float code turns non-finite.

An upload without an explicit mask sends the active-rank block of each factor (rows of A,
columns of B): a slice, gathered and scattered without boolean indexing. All of an upload's
values are quantised in one pass (one segment per tensor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lit_airlora.channel.quantize import QuantizedSegments, Quantizer, pack_bits
from lit_airlora.federated.upload import Upload, active_index

#: Where a tensor's sent entries are: a tuple of slices (active-rank block) or a bool mask.
EntryIndex = tuple[slice, ...] | Tensor


@dataclass
class EncodedUpload:
    """The quantised payload of one upload.

    Attributes:
        names: Tensors sent, in payload order.
        indices: Per name, where its sent entries are (:func:`sent_index`).
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


def sent_index(upload: Upload, name: str) -> EntryIndex:
    """Where ``upload`` sends entries of ``name``: its mask, or the active-rank block's slices.

    Same entries, in the same (row-major) order, as ``tensor[upload.sent_mask(name)]``.
    """
    if name in upload.masks:
        return upload.masks[name]
    return active_index(name, upload.ranks)


def encode_upload(
    upload: Upload, names: Sequence[str], quantizer: Quantizer, generator: torch.Generator
) -> EncodedUpload:
    """Quantise the sent entries of ``names`` (a per-tensor scale each) in one pass."""
    indices = [sent_index(upload, n) for n in names]
    parts = [upload.tensors[n][i].reshape(-1) for n, i in zip(names, indices, strict=True)]
    counts = [p.numel() for p in parts]
    values = torch.cat(parts) if parts else torch.zeros(0)
    quantized = quantizer.quantize_segments(values, counts, generator)
    side_bits = quantizer.payload_bits(sum(counts), len(names))
    return EncodedUpload(
        names=list(names),
        indices=indices,
        quantized=quantized,
        bits_per_value=quantizer.bits_per_value,
        payload_bits=side_bits + index_bits(upload),
    )


def index_bits(upload: Upload) -> int:
    """Bits of the sparsity index a sparsifying encoder declared (``meta["index_bits"]``)."""
    return int(upload.meta.get("index_bits", 0))


def payload_bitstream(encoded: EncodedUpload) -> Tensor:
    """``[payload_bits]`` uint8: the packed codes, then the side information and index fields."""
    codes = pack_bits(encoded.codes(), encoded.bits_per_value)
    side = encoded.payload_bits - codes.numel()
    # The side-information and index fields only cost airtime (their content travels error-free).
    return torch.cat([codes, torch.zeros(side, dtype=torch.uint8, device=codes.device)])


def decode_upload(
    upload: Upload,
    encoded: EncodedUpload,
    quantizer: Quantizer,
    value_ok: Tensor,
    received_codes: Tensor | None = None,
) -> Upload:
    """The upload as the server received it (a new value; ``upload`` is not modified).

    Args:
        upload: The upload as sent.
        encoded: Its payload (:func:`encode_upload`).
        quantizer: The quantiser that produced ``encoded``.
        value_ok: ``[num_values]`` bool, values whose blocks arrived.
        received_codes: ``[num_values]`` int64 codes as received (with bit errors), or ``None``
            when received blocks are exact.
    """
    sent = encoded.quantized
    codes = sent.codes if received_codes is None else received_codes.to(sent.codes.device)
    values = quantizer.dequantize_segments(QuantizedSegments(codes, sent.scales, sent.counts))
    ok = value_ok.to(values.device) & torch.isfinite(values)
    values = torch.where(ok, values, torch.zeros_like(values))
    tensors, masks = dict(upload.tensors), dict(upload.masks)
    parts = zip(
        encoded.names, encoded.indices, values.split(sent.counts), ok.split(sent.counts),
        strict=True,
    )  # fmt: skip
    for name, index, received, received_ok in parts:
        like = upload.tensors[name]
        tensors[name] = _scatter(torch.zeros_like(like), index, received.to(like.dtype))
        masks[name] = _scatter(torch.zeros_like(like, dtype=torch.bool), index, received_ok)
    return upload.replace(tensors=tensors, masks=masks)


def _scatter(out: Tensor, index: EntryIndex, values: Tensor) -> Tensor:
    """``out`` with ``values`` (flat, row-major) written at ``index``."""
    if isinstance(index, Tensor):
        out[index.to(out.device)] = values
    else:
        block = out[index]
        block.copy_(values.view(block.shape))
    return out
