"""Per-tier memory: frozen weights, adapters, optimizer state and saved activations, measured.

A tier's peak is ``copies * frozen + adapter_copies * (adapter + gradient + optimizer state) +
saved activations of its concurrent streams``. Every term is measured on the live tensors:
weights and adapters by their storages, optimizer state after a real AdamW step, and
activations by ``torch.autograd.graph.saved_tensors_hooks`` while ``streams`` forwards are
alive at once (a byte count of what autograd keeps for backward, exact on CPU, where the
allocator's caching hides it from RSS). Concurrency and copies follow the system: SplitLLM's
cloud runs ``E`` streams on one frozen copy and one LoRA_s; SFL's server keeps one server-side
model and adapter per user and runs all ``N`` users at once (SplitFed-v1).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


class SavedTensorMeter:
    """Bytes autograd saves for backward inside the context, current and peak.

    Each storage counts once however many saved tensors view it; excluded storages (the
    weights, already counted as such) never count. A saved tensor stops counting when its
    graph is freed (after backward).

    Args:
        exclude: Tensors whose storages are not activations (parameters, buffers).
    """

    def __init__(self, exclude: Iterable[Tensor] = ()) -> None:
        self.excluded = {_ptr(t) for t in exclude}
        self.current = 0
        self.peak = 0
        self._refs: dict[int, list[int]] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: Tensor):
        ptr = _ptr(tensor)
        if ptr in self.excluded or tensor.numel() == 0:
            return tensor
        entry = self._refs.setdefault(ptr, [0, tensor.untyped_storage().nbytes()])
        if entry[0] == 0:
            self.current += entry[1]
            self.peak = max(self.peak, self.current)
        entry[0] += 1
        return _Saved(tensor, ptr, self)

    def release(self, ptr: int) -> None:
        entry = self._refs[ptr]
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self._refs[ptr]


class _Saved:
    __slots__ = ("meter", "ptr", "tensor")

    def __init__(self, tensor: Tensor, ptr: int, meter: SavedTensorMeter) -> None:
        self.tensor, self.ptr, self.meter = tensor, ptr, meter

    def __del__(self) -> None:
        self.meter.release(self.ptr)


def _unpack(packed):
    return packed.tensor if isinstance(packed, _Saved) else packed


def _ptr(tensor: Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def storage_bytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen: dict[int, int] = {}
    for t in tensors:
        seen.setdefault(_ptr(t), t.untyped_storage().nbytes())
    return sum(seen.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's per-parameter state tensors."""
    return storage_bytes(
        v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)
    )


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc/self/statm``), 0 elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


@dataclass
class TierMemory:
    """One tier's memory under one system's concurrency (bytes).

    Attributes:
        tier: Tier name.
        frozen_bytes: Frozen base weights of one copy of the tier.
        adapter_bytes: One LoRA copy of the tier.
        gradient_bytes: Its gradients.
        optimizer_bytes: Its AdamW state.
        activation_bytes: Peak saved activations with ``streams`` streams alive at once.
        activation_bytes_per_stream: The same with one stream.
        copies: Frozen copies held (SFL server: one per user).
        adapter_copies: Adapter + gradient + optimizer copies held.
        streams: Streams alive at once.
        rss_delta_bytes: RSS growth over the concurrent forwards (cross-check; allocator
            dependent).
    """

    tier: str
    frozen_bytes: int
    adapter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    activation_bytes_per_stream: int
    copies: int
    adapter_copies: int
    streams: int
    rss_delta_bytes: int = 0

    @property
    def peak_bytes(self) -> int:
        trained = self.adapter_bytes + self.gradient_bytes + self.optimizer_bytes
        return (
            self.copies * self.frozen_bytes + self.adapter_copies * trained + self.activation_bytes
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "peak_bytes": self.peak_bytes}


def measure_tier(
    tier: str,
    frozen: list[Tensor],
    adapter: list[nn.Parameter],
    run_stream: Callable[[int], tuple[Tensor, Tensor | None]],
    streams: int,
    copies: int = 1,
    adapter_copies: int = 1,
    exclude: Iterable[Tensor] = (),
    concurrent: bool = True,
) -> TierMemory:
    """Measure a tier: sizes of its tensors, one AdamW step, and ``streams`` live forwards.

    Args:
        tier: Tier name.
        frozen: The tier's frozen base tensors (one copy).
        adapter: The tier's LoRA parameters.
        run_stream: ``run_stream(k)`` runs stream ``k``'s forward and returns ``(output,
            grad)``: the tensor to back-propagate and the gradient it receives (``None`` for a
            scalar loss).
        streams: Streams alive at once.
        copies: Frozen copies the system holds.
        adapter_copies: Adapter copies the system holds.
        exclude: Further tensors that are not activations (e.g. every weight of the model).
        concurrent: Run the ``streams`` forwards alive at once; ``False`` measures one stream
            and counts ``streams`` times it (streams share no saved tensor, so the sum is exact:
            tests/split/test_memory.py checks it), and no RSS cross-check.
    """
    excluded = [*frozen, *adapter, *exclude]
    per_stream, rss_delta = _activation_peak(run_stream, 1, excluded)
    together = streams * per_stream
    if concurrent and streams > 1:
        together, rss_delta = _activation_peak(run_stream, streams, excluded)
    optimizer = torch.optim.AdamW(adapter, lr=0.0)
    optimizer.step()
    memory = TierMemory(
        tier=tier,
        frozen_bytes=storage_bytes(frozen),
        adapter_bytes=storage_bytes(adapter),
        gradient_bytes=storage_bytes(p.grad for p in adapter if p.grad is not None),
        optimizer_bytes=optimizer_state_bytes(optimizer),
        activation_bytes=together,
        activation_bytes_per_stream=per_stream,
        copies=copies,
        adapter_copies=adapter_copies,
        streams=streams,
        rss_delta_bytes=rss_delta,
    )
    for p in adapter:
        p.grad = None
    return memory


def _activation_peak(run_stream, streams: int, excluded: list[Tensor]) -> tuple[int, int]:
    """Peak saved bytes and RSS growth with ``streams`` forwards alive, then their backwards."""
    meter = SavedTensorMeter(excluded)
    before = rss_bytes()
    with meter:
        outputs = [run_stream(k) for k in range(streams)]
    rss_delta = rss_bytes() - before
    for output, grad in outputs:
        output.backward(grad)
    del outputs
    return meter.peak, rss_delta


def tier_frozen_tensors(parts, spec) -> list[Tensor]:
    """The frozen base weights and buffers a tier holds (LoRA factors excluded)."""
    modules = list(parts.decoder.layers[spec.start : spec.end])
    modules.append(parts.decoder.rotary_emb)
    if spec.has_embedding:
        modules.append(parts.decoder.embed_tokens)
    if spec.has_head:
        modules += [parts.decoder.norm, parts.lm_head]
    tensors = []
    for module in modules:
        tensors += [p for n, p in module.named_parameters() if "lora_" not in n]
        tensors += list(module.buffers())
    return tensors


def tier_runner(parts, spec, batch: dict[str, Tensor], generator: torch.Generator):
    """``run_stream(k)`` for :func:`measure_tier`: the tier's forward on the batch as it would
    receive it (token ids, or a received activation that needs a gradient), and the gradient its
    output would get back (``None`` for the cloud's loss)."""
    from lit_airlora.split.tiers import tier_forward

    shape = (*batch["input_ids"].shape, parts.config.hidden_size)  # (B, T, C)

    def run_stream(_k: int) -> tuple[Tensor, Tensor | None]:
        inputs = batch["input_ids"]
        if not spec.has_embedding:
            inputs = torch.randn(shape, generator=generator).requires_grad_(True)
        out = tier_forward(parts, spec, inputs, batch["attention_mask"], batch["labels"])
        return out, None if spec.has_head else torch.randn(shape, generator=generator)

    return run_stream
