"""FLoRA: federated LoRA by stacking heterogeneous adapters (Wang et al., "FLoRA: Federated
Fine-Tuning Large Language Models with Heterogeneous Low-Rank Adaptations", NeurIPS 2024)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from lit_airlora.federated.aggregation import safe_divide, weighted_sum
from lit_airlora.federated.aggregators import WEIGHT_KEY, Aggregator, identity_reduce
from lit_airlora.federated.heterogeneous import zero_padded
from lit_airlora.federated.upload import Reduce, Upload
from lit_airlora.rank_blocks import is_lora_factor, module_of

#: Suffix of an aggregate entry that is a dense weight delta to merge into the base weights.
MERGE_SUFFIX = ".merged_delta"


def stack_factors(
    factors: Sequence[tuple[Tensor, Tensor]], weights: Sequence[float]
) -> tuple[Tensor, Tensor]:
    """FLoRA's stacking: ``B = [B_1 ... B_K]`` (columns), ``A = [p_1 A_1; ...; p_K A_K]`` (rows).

    Args:
        factors: Per client ``(B_k: [d_out, r_k], A_k: [r_k, d_in])``; ranks may differ.
        weights: Per client ``p_k``.

    Returns:
        ``(B: [d_out, sum_k r_k], A: [sum_k r_k, d_in])`` float64, so ``B @ A = sum_k p_k B_k A_k``.
    """
    if not factors:
        raise ValueError("stack_factors needs at least one client's factors.")
    b = torch.cat([b_k.double() for b_k, _ in factors], dim=1)
    a = torch.cat([p * a_k.double() for (_, a_k), p in zip(factors, weights, strict=True)])
    return b, a


class FLoRA(Aggregator):
    """FLoRA: stack the clients' LoRA modules so the server's product is exactly the weighted
    sum of their products, whatever their ranks (Wang et al., NeurIPS 2024).

    1. Every client starts the round from a freshly initialised adapter (the global one) and
       sends its trained module ``B_k, A_k`` at its own rank ``r_k`` (``r_k (d_in + d_out)``
       values per module, what the ledger counts).
    2. The server stacks ``A_k`` (rows, scaled by ``p_k = w_k / sum_j w_j``) and ``B_k``
       (columns): ``B_stack A_stack = sum_k p_k B_k A_k``, with no cross terms (FedAvg of ``A``
       and ``B`` separately adds ``sum_{j != k} p_j p_k B_j A_k``).
    3. The stacked product is merged into the frozen base weights (the paper's clients merge
       the stacked module into their local model) and the adapter is re-initialised for the
       next round (peft's init: Kaiming-uniform ``A``, zero ``B``, drawn from the round seed).
       Every client of the round downloads the stacked modules, ``sum_k r_k (d_in + d_out)``
       float32 values per module (:meth:`stacked_values`; the ledger's
       ``comm/adapter_download_bits``), which grow with the clients, unlike FedAvg's reply.

    The aggregate holds one dense ``"<module>.merged_delta"`` per module, in units of the
    adapter's ``max_rank`` scaling (a client of rank ``r_k`` counts ``max_rank / r_k`` times its
    ``B_k A_k``, as the rank masks scale it); dense tensors (a classification head) are averaged
    as updates, as FedIT does. DDP ranks sum their partial products. Stacking gives every
    client its own slots, so an over-the-air sum cannot compute it (``is_linear`` is False):
    use an ideal or digital uplink. Exports fold the merged weights into a peft adapter.
    """

    is_linear = False

    #: The aggregate is merged into the frozen base weights; the adapter restarts every round.
    merges_into_base = True

    def client_upload(
        self, upload: Upload, local: Mapping[str, Tensor], global_adapter: Mapping[str, Tensor]
    ) -> Upload:
        """The trained factors themselves (zero beyond the client's rank), not their update."""
        factors = {n: local[n] for n in upload.tensors if is_lora_factor(n)}
        return upload.replace(tensors={**upload.tensors, **zero_padded(factors, upload.ranks)})

    def broadcast_values(self, template: Mapping[str, Tensor]) -> int:
        """The averaged dense tensors; the fresh adapter is drawn from the round seed, not sent."""
        return sum(t.numel() for n, t in template.items() if not is_lora_factor(n))

    def stacked_values(self, upload: Upload, template: Mapping[str, Tensor]) -> int:
        """The client's slots in the stacked modules every client downloads and merges:
        ``r_k`` columns of ``B_stack`` (``d_out`` each) and rows of ``A_stack`` (``d_in``)."""
        total = 0
        for module in _modules(template):
            d_out, d_in = (
                template[f"{module}.lora_B"].shape[0],
                template[f"{module}.lora_A"].shape[1],
            )
            total += upload.ranks[module] * (d_in + d_out)
        return total

    def partial_sums(
        self, uploads: Sequence[Upload], template: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``sum_k w_k (R / r_k) B_k A_k`` per module (stacked), weighted dense updates, ``W``."""
        _check_plain_lora(template)
        device = next(iter(template.values())).device
        sums = {}
        for module in _modules(template):
            sums[module + MERGE_SUFFIX] = _stacked_product(uploads, module, template).to(device)
        dense = [n for n in template if not is_lora_factor(n)]
        if dense and uploads:
            sums.update(
                weighted_sum([u.tensors for u in uploads], [u.weight for u in uploads], dense)
            )
        elif dense:
            sums.update({n: torch.zeros_like(template[n], dtype=torch.float64) for n in dense})
        total = float(sum(u.weight for u in uploads))
        sums[WEIGHT_KEY] = torch.tensor(total, dtype=torch.float64, device=device)
        return sums

    def finalize(self, sums: Mapping[str, Tensor]) -> dict[str, Tensor]:
        total = sums[WEIGHT_KEY]
        return {n: safe_divide(t, total.expand_as(t)) for n, t in sums.items() if n != WEIGHT_KEY}

    def aggregate(
        self,
        uploads: Sequence[Upload],
        template: Mapping[str, Tensor],
        reduce: Reduce = identity_reduce,
    ) -> dict[str, Tensor]:
        """Merged deltas in float32, dense updates in the template's dtypes."""
        aggregate = self.finalize(reduce(self.partial_sums(uploads, template)))
        return {
            n: t.to(template[n].dtype if n in template else torch.float32)
            for n, t in aggregate.items()
        }


def merged_deltas(aggregate: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ``module -> [d_out, d_in]`` weight deltas of an aggregate (see :class:`FLoRA`)."""
    return {n[: -len(MERGE_SUFFIX)]: t for n, t in aggregate.items() if n.endswith(MERGE_SUFFIX)}


def _stacked_product(uploads: Sequence[Upload], module: str, template: Mapping[str, Tensor]):
    """``B_stack @ A_stack`` of this rank's clients for ``module``: ``[d_out, d_in]`` float64."""
    a_name, b_name = f"{module}.lora_A", f"{module}.lora_B"
    max_rank, d_in = template[a_name].shape
    if not uploads:
        return torch.zeros((template[b_name].shape[0], d_in), dtype=torch.float64)
    factors, weights = [], []
    for upload in uploads:
        rank = upload.ranks[module]
        factors.append((upload.tensors[b_name][:, :rank], upload.tensors[a_name][:rank]))
        weights.append(upload.weight * max_rank / rank)  # the rank mask's scale max_rank / r
    b, a = stack_factors(factors, weights)  # (d_out, sum r_k), (sum r_k, d_in)
    return b @ a


def _modules(template: Mapping[str, Tensor]) -> list[str]:
    return list(dict.fromkeys(module_of(n) for n in template if n.endswith(".lora_A")))


def _check_plain_lora(template: Mapping[str, Tensor]) -> None:
    if any(n.endswith(".lora_E") for n in template):
        raise ValueError(
            "`aggregator` (FLoRA) stacks plain LoRA factors B and A; the adapter is in SVD form "
            "(lora.svd_form: true). Set `lora.svd_form: false` or use FedIT."
        )
