"""SVD-form LoRA (AdaLoRA-like): ``Delta W = P diag(e) Q`` over the max-rank allocation.

Each adapted module keeps peft's ``lora_B`` as ``P: [d_out, r]`` and ``lora_A`` as
``Q: [r, d_in]`` and gains a trainable ``lora_E: [r]`` (the singular values ``e``), applied in
the rank-mask hook beside the mask, so ``Delta W = alpha / r * P diag(e * m) Q``. As in AdaLoRA
(Zhang et al., ICLR 2023, "Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning"),
``e`` starts at zero and ``P``, ``Q`` at ``N(0, 0.02^2)``, and the loss adds
``w (||P^T P - I||_F^2 + ||Q Q^T - I||_F^2)`` over the active ranks (AirLLM, arXiv 2507.11515,
uses ``w = 0.01``). Exports fold ``e`` into ``P`` (``B' = P diag(e)``), a plain LoRA adapter.

peft's own AdaLoRA layers are not reused: their factors are bare ``ParameterDict`` entries (no
``lora_A`` module for the rank-mask hook), their rank mask zeroes ``lora_E`` in place (a dropped
rank loses its value; our masks never destroy one), their scaling and budget schedule are tied
to ``AdaLoraModel.update_and_allocate``, and their ``rank_pattern`` holds boolean masks, not the
integer ranks of plain LoRA that the export and the channels use.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lit_airlora.lora.layers import LoraFactors, find_lora_layers

#: AdaLoRA's initial standard deviation of P and Q.
INIT_STD = 0.02


def add_singular_values(model: nn.Module, adapter_name: str = "default") -> None:
    """Give every LoRA layer a trainable ``lora_E[adapter_name]: [max_rank]`` (zeros) and
    re-draw its factors from ``N(0, INIT_STD^2)`` (with ``e = 0`` the update starts at zero)."""
    for factors in find_lora_layers(model, adapter_name).values():
        layer, A, B = factors.layer, factors.lora_A, factors.lora_B
        if not hasattr(layer, "lora_E"):
            layer.lora_E = nn.ParameterDict()
        layer.lora_E[adapter_name] = nn.Parameter(
            torch.zeros(A.shape[0], dtype=A.dtype, device=A.device)
        )
        with torch.no_grad():
            A.normal_(0.0, INIT_STD)
            B.normal_(0.0, INIT_STD)


def orthogonality_penalty(layers: Mapping[str, LoraFactors], ranks: Mapping[str, int]) -> Tensor:
    """``sum_l ||P_l^T P_l - I||_F^2 + ||Q_l Q_l^T - I||_F^2`` over each module's active ranks.

    Args:
        layers: Module name -> factors (``P = lora_B[:, :r]``, ``Q = lora_A[:r]``).
        ranks: Module name -> active rank ``r``.
    """
    total = None
    for name, factors in layers.items():
        rank = ranks[name]
        P = factors.lora_B[:, :rank].float()  # (d_out, r)
        Q = factors.lora_A[:rank].float()  # (r, d_in)
        eye = torch.eye(rank, device=P.device)
        term = (P.T @ P - eye).square().sum() + (Q @ Q.T - eye).square().sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


def fold_singular_values(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A peft state dict with every ``<module>.lora_E`` folded into its ``lora_B`` (a new dict).

    ``B' = B diag(e)``, so a plain LoRA adapter with the same ``A`` computes ``P diag(e) Q``.
    """
    folded = {k: v for k, v in state.items() if not k.endswith(".lora_E")}
    for key, e in state.items():
        if key.endswith(".lora_E"):
            b_key = f"{key[: -len('.lora_E')]}.lora_B.weight"
            folded[b_key] = state[b_key] * e.to(state[b_key].dtype)  # (d_out, r) * (r,)
    return folded
