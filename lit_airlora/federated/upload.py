"""The upload value: what one client sends at the end of a round, and the round context."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor

from lit_airlora.rank_blocks import active_rank_mask

if TYPE_CHECKING:
    from lit_airlora.federated.aggregators import Aggregator
    from lit_airlora.federated.plan import RoundPlan

#: Sums a dict of tensors over DDP ranks (identity on one process).
Reduce = Callable[[Mapping[str, Tensor]], dict[str, Tensor]]

#: Bits per value of an uncompressed float32 payload.
FLOAT32_BITS = 32


@dataclass
class Upload:
    """One client's adapter update for one round.

    Attributes:
        client_id: Index of the client in the federation.
        tensors: Adapter update (local minus global), keyed by LoRA parameter name
            (``"<module>.lora_A"`` / ``"<module>.lora_B"``): ``lora_A: [max_rank, d_in]``,
            ``lora_B: [d_out, max_rank]``, float32. Entries outside the active ranks are zero.
            Dense tensors without a rank (a classification head, ``"score.weight"``) are sent
            whole.
        ranks: Active rank per adapted module (``"<module>"`` -> int).
        weight: Aggregation weight (the client's number of training samples).
        masks: Optional boolean masks (same shapes as ``tensors``) of the entries actually sent,
            set by sparsifying encoders. Without a mask a tensor's active-rank block is sent.
        meta: Scalars about the upload (``bits``, ``snr_db`` ...), summed into the ledger.
    """

    client_id: int
    tensors: dict[str, Tensor]
    ranks: dict[str, int]
    weight: float
    masks: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, float] = field(default_factory=dict)

    def sent_mask(self, name: str) -> Tensor:
        """Boolean mask of the entries of ``tensors[name]`` that this upload sends."""
        if name in self.masks:
            return self.masks[name]
        # Dense tensors (a classification head, zeroth-order scalars) are sent whole.
        return active_rank_mask(name, self.tensors[name], self.ranks)

    def num_values(self) -> int:
        """Number of real values this upload sends (active ranks, or the encoder's masks)."""
        return int(sum(int(self.sent_mask(n).sum()) for n in self.tensors))

    def payload_bits(self) -> float:
        """Bits on the air: ``meta['bits']`` when an encoder set it, else float32 values."""
        if "bits" in self.meta:
            return float(self.meta["bits"])
        return float(FLOAT32_BITS * self.num_values())

    def replace(self, **changes) -> Upload:
        """A copy with some fields replaced (uploads are values: never mutate a caller's)."""
        fields = {
            "client_id": self.client_id,
            "tensors": self.tensors,
            "ranks": self.ranks,
            "weight": self.weight,
            "masks": self.masks,
            "meta": dict(self.meta),
        }
        fields.update(changes)
        return Upload(**fields)


@dataclass
class RoundContext:
    """State shared by the upload stages of one round.

    Stages read and replace ``uploads``; a stage that produces the server's estimate of the
    aggregate directly (over-the-air aggregation) sets ``aggregate``. When no stage sets it, the
    module's aggregator combines the (received) uploads.

    Attributes:
        round_idx: Zero-based communication round.
        uploads: This rank's uploads, in client order.
        global_adapter: Global adapter at the start of the round (read-only), name -> tensor.
        aggregator: The module's aggregator (see :mod:`lit_airlora.federated.aggregators`).
        ideal_aggregate: Noise-free aggregate of the raw uploads (name -> update tensor),
            identical on every DDP rank.
        aggregate: Server's estimate of the aggregate update, set by a stage or by the module.
        reduce: Sums a dict of tensors over DDP ranks (identity on one process).
        generator_seed: Seed shared by all ranks for this round's shared randomness: derive
            per-client generators from ``(generator_seed, client_id)`` and shared ones (receiver
            noise) from ``generator_seed`` alone, so 1 and N DDP ranks draw the same numbers.
            Equals ``plan.seed`` when a plan is given.
        round_clients: All clients of this round, on every rank (sorted); ``plan.clients``.
        client_weights: Aggregation weight of every client of this round, on every rank;
            ``plan.client_weights``.
        metrics: Scalars to log at round end (hierarchical keys, e.g. ``channel/agg_nmse``).
        plan: The round plan the module published (see :class:`RoundPlan`). When given, it
            sets ``generator_seed``, ``round_clients`` and ``client_weights``; contexts built
            without one (tests, remote-link mode) keep the values passed.
    """

    round_idx: int
    uploads: list[Upload]
    global_adapter: dict[str, Tensor]
    aggregator: Aggregator
    ideal_aggregate: dict[str, Tensor]
    reduce: Reduce
    generator_seed: int | None = None
    round_clients: list[int] = field(default_factory=list)
    client_weights: dict[int, float] = field(default_factory=dict)
    aggregate: dict[str, Tensor] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    plan: RoundPlan | None = None

    def __post_init__(self) -> None:
        if self.plan is not None:
            self.generator_seed = self.plan.seed
            self.round_clients = list(self.plan.clients)
            self.client_weights = dict(self.plan.client_weights)
        if self.generator_seed is None:
            raise ValueError("RoundContext needs `plan` or `generator_seed`.")
