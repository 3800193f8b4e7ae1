"""SOFT callback: near-orthogonality regulariser, component sparsification, covariance logging."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from typing_extensions import override

from lit_airlora.callbacks.sparsify import Sparsify
from lit_airlora.compression.covariance import factor_covariance
from lit_airlora.compression.orthogonality import orthogonality_grads, orthogonality_penalty
from lit_airlora.compression.soft import SOFTEncoder
from lit_airlora.federated.upload import RoundContext
from lit_airlora.lora.layers import LoraFactors, find_lora_layers


class SOFT(Sparsify):
    """Sparsified orthogonal fine-tuning (SOFT) of federated LoRA.

    Kim & Choi, "Communication-Efficient Wireless Federated Fine-Tuning for Large-Scale AI
    Models", arXiv 2505.00333. Before every local optimizer step the gradient of
    ``lambda_orth * R`` is added to the LoRA factors, with
    ``R = ||A A^T - diag(A A^T)||_F^2 + ||B^T B - diag(B^T B)||_F^2`` over the active ranks
    (closed form, so it works in any LightningModule holding peft LoRA). Near-orthogonal factors
    make ``s_i = ||b_i|| ||a_i||`` the singular values of ``B A``; at the encode stage each
    client sends the update of its ``ceil((1 - rho) r)`` most important components plus an
    ``r``-bit mask per module (:class:`~lit_airlora.compression.soft.SOFTEncoder`, where the
    choice of local-factor importance and zero updates for dropped components is explained).
    At the aggregate stage it logs the factor-covariance term of averaging A and B separately
    (:mod:`lit_airlora.compression.covariance`). ``rho`` is fixed, or set every round by a
    controller (:class:`~lit_airlora.callbacks.tsfa.TSFA`) through :meth:`set_rho`.

    Logs ``soft/orthogonality`` (the penalty ``R``, summed over modules, per local step),
    ``soft/sparsification_error``, ``soft/error_estimate``, ``soft/relative_error``,
    ``soft/update_error``, ``soft/kept_fraction`` (means over the round's clients) and
    ``soft/factor_covariance``.

    Args:
        rho: Fraction of components dropped, in ``[0, 1)``.
        lambda_orth: Weight of the near-orthogonality regulariser (0 disables it).
        log_covariance: Compute and log ``soft/factor_covariance`` (one extra all-reduce of the
            adapter under DDP).
        remote_mode: In a module other than ours, whether the received (sparsified) adapter
            ``"replace"``s the trained one or ``"shadow"``s it for validation.
    """

    def __init__(
        self,
        rho: float = 0.5,
        lambda_orth: float = 1e-3,
        log_covariance: bool = True,
        remote_mode: str = "replace",
    ):
        super().__init__(SOFTEncoder(rho), metric_prefix="soft", remote_mode=remote_mode)
        self.lambda_orth = _check_lambda_orth(lambda_orth)
        self.log_covariance = log_covariance
        self._layers: dict[str, LoraFactors] | None = None

    @override
    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # The module may build its model in configure_model (after setup): find layers lazily.
        self._layers = None

    @override
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.lambda_orth == 0:
            return
        layers = self._lora_layers(pl_module)
        ranks = getattr(pl_module, "ranks", None) or {}
        penalty = add_orthogonality_grads_(layers, ranks, self.lambda_orth)
        pl_module.log("soft/orthogonality", penalty, on_step=False, on_epoch=True)

    @override
    def on_upload_aggregate(self, trainer, pl_module, ctx: RoundContext) -> None:
        if self.log_covariance:
            covariance = factor_covariance(ctx.uploads, ctx.global_adapter, ctx.reduce)
            ctx.metrics["soft/factor_covariance"] = covariance

    def _lora_layers(self, pl_module) -> dict[str, LoraFactors]:
        if self._layers is None:
            self._layers = getattr(pl_module, "lora_layers", None) or find_lora_layers(pl_module)
            if not self._layers:
                raise RuntimeError(
                    f"SOFT found no peft LoRA layers in {type(pl_module).__name__}: its "
                    "regulariser needs a module holding a peft LoRA model."
                )
        return self._layers


@torch.no_grad()
def add_orthogonality_grads_(
    layers: Mapping[str, LoraFactors], ranks: Mapping[str, int], weight: float
) -> float:
    """Add ``weight * dR/d(factor)`` to the ``.grad`` of every active factor block (in place).

    Returns:
        The penalty ``R`` summed over modules (before weighting).
    """
    total = 0.0
    for name, factors in layers.items():
        rank = int(ranks.get(name, factors.max_rank))
        lora_a = factors.lora_A[:rank].float()  # (r, d_in)
        lora_b = factors.lora_B[:, :rank].float()  # (d_out, r)
        grad_a, grad_b = orthogonality_grads(lora_a, lora_b)
        _accumulate_grad_(factors.lora_A, (slice(0, rank),), weight * grad_a)
        _accumulate_grad_(factors.lora_B, (slice(None), slice(0, rank)), weight * grad_b)
        total += float(orthogonality_penalty(lora_a, lora_b))
    return total


def _accumulate_grad_(param: torch.nn.Parameter, block: tuple, grad: torch.Tensor) -> None:
    if not param.requires_grad:  # a frozen factor (e.g. FFA-LoRA's A) is not optimised
        return
    if param.grad is None:
        param.grad = torch.zeros_like(param)
    param.grad[block] += grad.to(param.grad.dtype)


def _check_lambda_orth(lambda_orth: float) -> float:
    if not float(lambda_orth) >= 0:
        raise ValueError(
            f"`lambda_orth` ({lambda_orth}) must be >= 0 (0 disables the regulariser)."
        )
    return float(lambda_orth)
