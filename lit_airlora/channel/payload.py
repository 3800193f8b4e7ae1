"""An upload as a digital payload: quantised sent entries -> bit stream -> received upload.

The payload of one client is the concatenation, in the upload's tensor order, of the codes of
the entries it sends (``upload.sent_mask(name)`` of every tensor the aggregator trains), each
``bits_per_value`` bits MSB first, followed by the quantiser's per-tensor side information
(scales). Side information is assumed to reach the server error-free (a protected control
field [assumed]): its bits are counted and cost airtime, but the server uses the sender's
scales. Values whose bits touch a lost block are missing: zero in the received tensor and
removed from its mask; so are values a corrupted float code turns non-finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lit_airlora.channel.quantize import QuantizedTensor, Quantizer, pack_bits
from lit_airlora.federated.upload import Upload


@dataclass
class EncodedUpload:
    """The quantised payload of one upload.

    Attributes:
        names: Tensors sent, in payload order.
        masks: Per name, the bool mask of the entries sent (the tensor's shape).
        quantized: Per name, the codes of the sent entries (mask order) and the scale.
        bits_per_value: Bits per code.
        payload_bits: Bits on the air: codes plus side information.
    """

    names: list[str]
    masks: list[Tensor]
    quantized: list[QuantizedTensor]
    bits_per_value: int
    payload_bits: int

    @property
    def num_values(self) -> int:
        return sum(q.codes.numel() for q in self.quantized)

    def codes(self) -> Tensor:
        """``[num_values]`` int64 codes of all sent entries, in payload order."""
        if not self.quantized:
            return torch.zeros(0, dtype=torch.int64)
        return torch.cat([q.codes for q in self.quantized])


def encode_upload(
    upload: Upload, names: Sequence[str], quantizer: Quantizer, generator: torch.Generator
) -> EncodedUpload:
    """Quantise the sent entries of ``names`` (a per-tensor scale each)."""
    masks = [upload.sent_mask(n) for n in names]
    quantized = [
        quantizer.quantize(upload.tensors[n][m], generator)
        for n, m in zip(names, masks, strict=True)
    ]
    num_values = sum(q.codes.numel() for q in quantized)
    return EncodedUpload(
        names=list(names),
        masks=masks,
        quantized=quantized,
        bits_per_value=quantizer.bits_per_value,
        payload_bits=quantizer.payload_bits(num_values, len(names)),
    )


def payload_bitstream(encoded: EncodedUpload) -> Tensor:
    """``[payload_bits]`` uint8: the packed codes, then the side-information field."""
    codes = pack_bits(encoded.codes(), encoded.bits_per_value)
    side = encoded.payload_bits - codes.numel()
    # The side-information field only costs airtime (its content travels error-free).
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
    codes = encoded.codes() if received_codes is None else received_codes
    tensors, masks = dict(upload.tensors), dict(upload.masks)
    offset = 0
    for name, mask, sent in zip(encoded.names, encoded.masks, encoded.quantized, strict=True):
        count = sent.codes.numel()
        part = slice(offset, offset + count)
        tensors[name], masks[name] = _received_tensor(
            upload.tensors[name],
            mask,
            quantizer.dequantize(QuantizedTensor(codes[part].to(sent.codes.device), sent.scale)),
            value_ok[part].to(mask.device),
        )
        offset += count
    return upload.replace(tensors=tensors, masks=masks)


def _received_tensor(
    sent: Tensor, mask: Tensor, values: Tensor, ok: Tensor
) -> tuple[Tensor, Tensor]:
    """Received tensor (zero where nothing usable arrived) and its mask of received entries."""
    ok = ok & torch.isfinite(values)
    received = torch.zeros_like(sent)
    received[mask] = torch.where(ok, values, torch.zeros_like(values)).to(sent.dtype)
    received_mask = mask.clone()
    received_mask[mask] = ok
    return received, received_mask
