"""Bit accounting of sparsified payloads: value bits plus index bits, kept composable."""

from __future__ import annotations

import math

from lit_airlora.federated.upload import FLOAT32_BITS, Upload


def index_bits(num_kept: int, numel: int) -> int:
    """Bits to say which ``num_kept`` of ``numel`` entries are sent.

    The cheaper of a list of positions (``ceil(log2 numel)`` bits each) and a bitmap
    (``numel`` bits).
    """
    if num_kept == 0 or numel <= 1:
        return 0
    return min(num_kept * math.ceil(math.log2(numel)), numel)


def with_index_bits(upload: Upload, num_index_bits: float) -> Upload:
    """Set ``meta['index_bits']`` and ``meta['bits']`` = float32 values + index bits.

    A quantiser that runs later recomputes ``bits`` as ``q * num_values() + index_bits``, so
    the index cost is kept apart from the value cost.
    """
    meta = dict(upload.meta)
    meta["index_bits"] = float(num_index_bits)
    meta["bits"] = float(FLOAT32_BITS * upload.num_values() + num_index_bits)
    return upload.replace(meta=meta)
