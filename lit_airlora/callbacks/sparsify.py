"""Encode-stage callback: compress every upload with a pluggable encoder."""

from __future__ import annotations

from typing import Any

import torch
from typing_extensions import override

from lit_airlora.callbacks.remote_link import RemoteLinkMixin
from lit_airlora.compression.base import Encoder
from lit_airlora.federated.upload import RoundContext
from lit_airlora.seeding import make_generator


class Sparsify(RemoteLinkMixin):
    """Compress each client's upload at the ``encode`` stage with ``encoder``.

    Every upload is encoded with its own generator, derived from the round's shared seed and the
    client id (so 1 and N DDP ranks draw the same positions). The encoder sets the upload's
    masks, zeroes what it does not send and writes ``meta['bits']`` (values + index bits) and
    ``meta['index_bits']``, which the module's ledger sums into ``comm/uplink_bits``. Logs the
    mean over the round's clients of ``<prefix>/kept_fraction`` (values sent over active values)
    and of each statistic the encoder reports. In a LightningModule other than ours, the
    adapter itself goes through the stages at each epoch end (remote-link mode, see
    :class:`~lit_airlora.callbacks.remote_link.RemoteLinkMixin`).

    Args:
        encoder: The compressor, e.g. ``lit_airlora.compression.topk.TopK``.
        metric_prefix: Prefix of the logged keys.
        remote_mode: In a foreign module, whether the received (compressed) adapter
            ``"replace"``s the trained one or ``"shadow"``s it for validation.
    """

    stage = "encode"

    def __init__(
        self, encoder: Encoder, metric_prefix: str = "compress", remote_mode: str = "replace"
    ):
        if not isinstance(encoder, Encoder):
            raise TypeError(
                f"`encoder` ({type(encoder).__name__}) must be a "
                "lit_airlora.compression.base.Encoder (e.g. lit_airlora.compression.topk.TopK)."
            )
        self.encoder = encoder
        self.metric_prefix = metric_prefix
        self.remote_mode = remote_mode
        self._check_remote()

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(encoder=type(self.encoder).__qualname__)

    @override
    def setup(self, trainer, pl_module, stage: str) -> None:
        check_factor_uploads(self, pl_module)
        super().setup(trainer, pl_module, stage)

    @property
    def rho(self) -> float | None:
        """The encoder's sparsity ratio (None for an encoder without one)."""
        return getattr(self.encoder, "rho", None)

    def set_rho(self, rho: float) -> None:
        """Set the encoder's sparsity ratio (controllers call this each round)."""
        if not hasattr(self.encoder, "set_rho"):
            raise TypeError(f"{type(self.encoder).__name__} has no sparsity ratio to set.")
        self.encoder.set_rho(rho)

    @override
    def on_upload_encode(self, trainer, pl_module, ctx: RoundContext) -> None:
        sums = dict.fromkeys(("kept_fraction", *self.encoder.stat_names), 0.0)
        encoded = []
        for upload in ctx.uploads:
            generator = make_generator(ctx.generator_seed, upload.client_id)
            new, stats = self.encoder.encode(upload, ctx.global_adapter, generator)
            stats["kept_fraction"] = new.num_values() / max(upload.num_values(), 1)
            for key, value in stats.items():
                sums[key] += value
            encoded.append(new)
        ctx.uploads = encoded
        ctx.metrics.update(self.round_means(ctx, sums, len(encoded)))

    def round_means(
        self, ctx: RoundContext, sums: dict[str, float], count: int
    ) -> dict[str, float]:
        """Means over all the round's clients (summed over DDP ranks), as prefixed metrics."""
        return {
            f"{self.metric_prefix}/{key}": value
            for key, value in reduced_means(ctx.reduce, sums, count, adapter_device(ctx)).items()
        }

    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        return state if self.rho is None else {**state, "rho": self.rho}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "rho" in state_dict:
            self.set_rho(state_dict["rho"])


def reduced_means(
    reduce, sums: dict[str, float], count: int, device: torch.device
) -> dict[str, float]:
    """``sums / count`` after summing both over DDP ranks (empty if no client anywhere)."""
    values = {**sums, "count": count}
    tensors = {
        k: torch.tensor(float(v), dtype=torch.float64, device=device) for k, v in values.items()
    }
    totals = reduce(tensors)
    total_count = float(totals.pop("count"))
    if total_count == 0:
        return {}
    return {key: float(value) / total_count for key, value in totals.items()}


def adapter_device(ctx: RoundContext) -> torch.device:
    """Device of the adapter tensors (where DDP reductions must live)."""
    return next(iter(ctx.global_adapter.values())).device


def check_factor_uploads(callback: object, pl_module: object) -> None:
    """Compressors act on LoRA factor updates; zeroth-order clients upload scalars instead."""
    if getattr(pl_module, "zeroth_order", None) is not None:
        raise ValueError(
            f"`{type(callback).__name__}` compresses LoRA factor updates, but the module trains "
            "with `zeroth_order` (clients upload projected-gradient scalars, no factors): remove "
            "the compressor or the `zeroth_order` setting."
        )
