"""Aggregators for clients of different LoRA ranks: HeteroFL-style and HetLoRA (Cho et al.)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from lit_airlora.federated.aggregation import safe_divide
from lit_airlora.federated.aggregators import WEIGHT_KEY, FedIT
from lit_airlora.federated.upload import Upload
from lit_airlora.rank_blocks import active_rank_mask, module_of


class HeteroFL(FedIT):
    """HeteroFL-style averaging of heterogeneous ranks (Diao et al., ICLR 2021, on LoRA factors).

    Clients of lower rank send their active block only; each entry is averaged over the clients
    that sent it (weights ``w_k`` times the client's sent mask), so low-rank clients do not
    dilute the high-rank components they never trained. Linear: it runs over the air.
    """

    def partial_sums(
        self, uploads: Sequence[Upload], template: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        sums = super().partial_sums(uploads, template)
        names = [n for n in template if self.trainable(n)]
        for name in names:
            count = torch.zeros_like(template[name], dtype=torch.float64)
            for upload in uploads:
                count.add_(upload.sent_mask(name).to(torch.float64), alpha=upload.weight)
            sums[f"{name}{WEIGHT_KEY}"] = count
        return sums

    def finalize(self, sums: Mapping[str, Tensor]) -> dict[str, Tensor]:
        names = [n for n in sums if not n.endswith(WEIGHT_KEY)]
        return {n: safe_divide(sums[n], sums[f"{n}{WEIGHT_KEY}"]) for n in names}


class HetLoRA(FedIT):
    """HetLoRA as published (Cho et al., "Heterogeneous LoRA for Federated Fine-tuning of
    On-Device Foundation Models", EMNLP 2024).

    1. Zero-padding: client ``k`` of rank ``r_k`` sends its trained factors ``B_k, A_k`` (its
       active block); the server pads them with zeros to ``max_rank``, so the components a
       client does not hold count as zero, not as the global's.
    2. Sparsity-weighted aggregation: the server averages the padded factors with weights
       ``s_k / sum_j s_j``, ``s_k = ||B_k A_k||_F`` (over all adapted modules [assumed: one
       weight per client, not per module]).
    3. Rank self-pruning [assumed form: the regulariser of the paper is not applied]: when the
       last ``ceil(prune_fraction * r_k)`` components of a client carry less than
       ``prune_threshold`` of its ``||B_k A_k||_F``, the client lowers its rank cap by that many
       for later rounds (never below 1). ``prune_threshold=0`` disables pruning.

    The weights are known only after local training, so the aggregate is not a sum with weights
    fixed before the round: use an ideal or digital uplink (``is_linear`` is False).

    Args:
        prune_fraction: Share ``gamma`` of a client's rank tested (and pruned) at a time.
        prune_threshold: Tail-to-total norm ratio under which the client prunes.
    """

    is_linear = False
    has_client_state = True

    def __init__(self, prune_fraction: float = 0.25, prune_threshold: float = 0.0) -> None:
        if not 0.0 < prune_fraction <= 1.0:
            raise ValueError(f"`prune_fraction` ({prune_fraction!r}) must be in (0, 1].")
        if not 0.0 <= prune_threshold < 1.0:
            raise ValueError(f"`prune_threshold` ({prune_threshold!r}) must be in [0, 1).")
        self.prune_fraction, self.prune_threshold = float(prune_fraction), float(prune_threshold)
        self.pruned_caps: dict[int, int] = {}

    def client_rank_cap(self, client_id: int, cap: int | None) -> int | None:
        pruned = self.pruned_caps.get(client_id)
        if pruned is None:
            return cap
        return pruned if cap is None else min(cap, pruned)

    def client_upload(
        self, upload: Upload, local: Mapping[str, Tensor], global_adapter: Mapping[str, Tensor]
    ) -> Upload:
        padded = zero_padded(local, upload.ranks)
        tensors = {n: padded[n] for n in upload.tensors}  # the module itself, not an update
        norm = product_norm(padded, upload.ranks)
        self._self_prune(upload.client_id, padded, upload.ranks, norm)
        return upload.replace(tensors=tensors, weight=norm, masks={})

    def partial_sums(
        self, uploads: Sequence[Upload], template: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``sum_k s_k (pad(B_k, A_k) - global)``: the finalised mean is the update to apply."""
        sums = super().partial_sums(uploads, template)
        total = float(sums[WEIGHT_KEY])
        for name in (n for n in template if self.trainable(n)):
            sums[name] = sums[name] - total * template[name].to(sums[name])
        return sums

    def _self_prune(self, client_id: int, padded, ranks: Mapping[str, int], norm: float) -> None:
        if self.prune_threshold <= 0 or norm <= 0:
            return
        rank = max(ranks.values())
        cut = max(1, math.ceil(self.prune_fraction * rank))
        if rank - cut < 1:
            return
        kept = {m: min(r, rank - cut) for m, r in ranks.items()}
        tail = math.sqrt(max(norm**2 - product_norm(padded, kept) ** 2, 0.0))
        if tail < self.prune_threshold * norm:
            self.pruned_caps[client_id] = rank - cut

    def state_dict(self) -> dict:
        return {"pruned_caps": {int(k): int(v) for k, v in self.pruned_caps.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.pruned_caps = {int(k): int(v) for k, v in state["pruned_caps"].items()}


def zero_padded(adapter: Mapping[str, Tensor], ranks: Mapping[str, int]) -> dict[str, Tensor]:
    """The factors with every component beyond the module's rank set to zero (``max_rank`` wide)."""
    return {n: t * active_rank_mask(n, t, ranks) for n, t in adapter.items()}


def product_norm(adapter: Mapping[str, Tensor], ranks: Mapping[str, int]) -> float:
    """``sqrt(sum_l ||B_l A_l||_F^2)`` over the modules, components beyond ``ranks`` dropped."""
    total = 0.0
    for module in sorted({module_of(n) for n in adapter}):
        a, b = adapter.get(f"{module}.lora_A"), adapter.get(f"{module}.lora_B")
        if a is None or b is None:
            continue
        r = ranks[module]
        total += float((b[:, :r].double() @ a[:r].double()).square().sum())  # (d_out, d_in)
    return math.sqrt(total)
