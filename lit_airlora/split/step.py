"""One training step of one stream through the tiers: activations forward, gradients back.

1. The first tier runs the embeddings and its blocks; its output crosses the hop's forward link.
2. Each next tier treats what it received as a leaf that needs a gradient and runs its blocks;
   the last tier adds the norm, head and loss (labels travel with the activation).
3. ``loss.backward()`` fills the last tier's LoRA gradients and the gradient of its received
   input, which crosses the hop's backward link; the tier before back-propagates it, and so on
   down to the first tier.

Each tier's LoRA gradients accumulate in its parameters' ``.grad``; stepping them is the
caller's (each tier owns its optimizer). With ideal links the gradients equal the unsplit
model's (the tiers compute the same function; see tests/split/test_equality.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lit_airlora.split.cutting import TierSpec
from lit_airlora.split.links import TensorLink, Transfer
from lit_airlora.split.tiers import DecoderParts, tier_forward


@dataclass(frozen=True)
class Hop:
    """The links between two consecutive tiers.

    Attributes:
        name: Ledger name (``"access"`` user-edge, ``"backhaul"`` edge-cloud).
        forward: Carries the activation (towards the cloud).
        backward: Carries its gradient (towards the user).
    """

    name: str
    forward: TensorLink
    backward: TensorLink


@dataclass
class StreamStats:
    """What one stream's step cost.

    Attributes:
        loss: The stream's loss (float).
        compute_s: Measured forward + backward time per tier name.
        traffic: Per ``"<hop>/<activation|gradient>"``: ``bits``, ``symbols``, ``airtime_s``,
            ``energy_j``.
    """

    loss: float
    compute_s: dict[str, float] = field(default_factory=dict)
    traffic: dict[str, dict[str, float]] = field(default_factory=dict)

    def latency_s(self) -> float:
        """Compute of every tier plus every transfer's airtime (the chain runs in sequence)."""
        return sum(self.compute_s.values()) + sum(t["airtime_s"] for t in self.traffic.values())


def split_step(
    parts: DecoderParts,
    specs: Sequence[TierSpec],
    hops: Sequence[Hop],
    batch: dict[str, Tensor],
    generators: Sequence[tuple[torch.Generator, torch.Generator]],
) -> StreamStats:
    """Forward and backward of one stream's batch through the tiers (gradients accumulate).

    Args:
        parts: The decoder's parts (shared with the LoRA-wrapped model).
        specs: The tiers, first to last.
        hops: ``len(specs) - 1`` hops between consecutive tiers.
        batch: ``input_ids``, ``attention_mask``, ``labels``: ``[B, T]``.
        generators: Per hop, the (forward, backward) generators of this transfer.

    Returns:
        The stream's :class:`StreamStats`.
    """
    stats = StreamStats(loss=0.0, compute_s=dict.fromkeys((s.name for s in specs), 0.0))
    outputs, inputs = [], []
    x: Tensor = batch["input_ids"]
    for index, spec in enumerate(specs):
        start = time.perf_counter()
        out = tier_forward(parts, spec, x, batch["attention_mask"], batch["labels"])
        stats.compute_s[spec.name] += time.perf_counter() - start
        if index == len(hops):
            loss = out
            break
        sent = hops[index].forward.send(out.detach(), generators[index][0])
        _record(stats, f"{hops[index].name}/activation", sent)
        outputs.append(out)
        x = sent.received.requires_grad_(True)
        inputs.append(x)
    _timed_backward(stats, specs[-1].name, loss, None)
    for index in reversed(range(len(hops))):
        sent = hops[index].backward.send(inputs[index].grad, generators[index][1])
        _record(stats, f"{hops[index].name}/gradient", sent)
        _timed_backward(stats, specs[index].name, outputs[index], sent.received)
    stats.loss = float(loss.detach())
    return stats


def _timed_backward(stats: StreamStats, tier: str, tensor: Tensor, grad: Tensor | None) -> None:
    start = time.perf_counter()
    tensor.backward(grad)
    stats.compute_s[tier] += time.perf_counter() - start


def _record(stats: StreamStats, key: str, sent: Transfer) -> None:
    stats.traffic[key] = {
        "bits": sent.bits,
        "symbols": sent.symbols,
        "airtime_s": sent.airtime_s,
        "energy_j": sent.energy_j,
    }
