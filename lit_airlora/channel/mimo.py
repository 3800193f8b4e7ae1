"""Multi-stream MIMO-OFDM AirComp with zero-forcing precoders (AirFL-LoRA's physical layer).

``K`` clients with ``N_t`` antennas send ``S`` streams per subcarrier to a server with ``N_r``
antennas; on subcarrier ``m`` the server combines with ``A_m`` (``N_r x S``). Client ``k``
uses the zero-forcing precoder ``F_km = w_k H_km^H A_m (A_m^H H_km H_km^H A_m)^{-1}``, so that
``A_m^H H_km F_km = w_k I`` (misalignment cancelled) and ``s_hat = A_m^H y`` estimates
``sum_k w_k s_k`` with error ``A_m^H n``: ``MSE_m = sigma^2 ||A_m||_F^2`` over the ``S``
streams. Writing ``A_m = sqrt(zeta_m) A~_m`` with ``||A~_m||_F = 1``, the power budgets
``tr(F F^H) = w_k^2 tr[(A~^H H_k H_k^H A~)^{-1}] / zeta_m <= P_k`` give the smallest feasible
``zeta_m = max_k w_k^2 tr[(A~^H H_k H_k^H A~)^{-1}] / P_k``, which the beamformer ``A~_m``
minimises (Zhu and Huang, "MIMO over-the-air computation for high-mobility multimodal
sensing", IEEE IoT J. 2019; Sun et al., "Federated low-rank adaptation for large models
fine-tuning over wireless networks", IEEE TWC 2025). Power budgets are normalised, ``P_k = 1``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_airlora.channel.aircomp import AirCompPlan


def stream_gram(channels: Tensor, combiner: Tensor) -> Tensor:
    """``[K, M, S, S]``: ``A_m^H H_km H_km^H A_m`` for ``channels [K, M, N_r, N_t]``, ``combiner
    [M, N_r, S]``."""
    projected = combiner.mH.unsqueeze(0) @ channels  # (K, M, S, N_t)
    return projected @ projected.mH


def stream_traces(channels: Tensor, combiner: Tensor) -> Tensor:
    """``[K, M]``: ``tr[(A_m^H H_km H_km^H A_m)^{-1}]`` (inf where ``A_m^H H_km`` is singular).

    Through the eigenvalues, ``sum_i 1 / lambda_i``: batched ``eigvalsh`` of many tiny matrices is
    two orders of magnitude faster than batched ``inv`` on CPU, and differentiable.
    """
    eigenvalues = torch.linalg.eigvalsh(stream_gram(channels, combiner))  # (K, M, S) ascending
    traces = (1.0 / eigenvalues).sum(-1)
    return torch.where(_singular(eigenvalues), torch.full_like(traces, float("inf")), traces)


def _singular(eigenvalues: Tensor) -> Tensor:
    """Numerically singular Gram matrices (condition number beyond float64's reach)."""
    top = eigenvalues[..., -1].abs()
    return ~torch.isfinite(eigenvalues).all(-1) | (eigenvalues[..., 0] <= 1e-13 * top) | (top == 0)


def beamforming_cost(channels: Tensor, combiner: Tensor, cost_weights: Tensor) -> Tensor:
    """``[M]``: ``max_k c_k tr[(A~^H H_k H_k^H A~)^{-1}]``, the ``zeta_m`` of a unit-norm ``A~``."""
    return (cost_weights[:, None] * stream_traces(channels, combiner)).amax(dim=0)


def zf_precoders(channels: Tensor, combiner: Tensor, weights: Tensor) -> Tensor:
    """``[K, M, N_t, S]``: ``F_km = w_k H_km^H A_m (A_m^H H_km H_km^H A_m)^{-1}``."""
    projected = combiner.mH.unsqueeze(0) @ channels  # (K, M, S, N_t)
    eigenvalues, vectors = torch.linalg.eigh(projected @ projected.mH)  # (K, M, S), (K, M, S, S)
    inverse = vectors @ (vectors.mH / eigenvalues[..., None].to(vectors.dtype))  # Gram^{-1}
    precoders = projected.mH @ inverse  # (K, M, N_t, S)
    return weights[:, None, None, None].to(precoders.dtype) * precoders


def mimo_plan(
    channels: Tensor, weights: Tensor, participating: Tensor, unit_combiner: Tensor
) -> AirCompPlan:
    """The multi-stream plan: scale ``A~`` to the power budgets, then zero-forcing precoders.

    Clients whose ``A~^H H_k`` is singular on some subcarrier are dropped (counted as truncated).

    Args:
        channels: ``[K, M, N_r, N_t]`` effective channels, complex128.
        weights: ``[K]`` aggregation weights.
        participating: ``[K]`` bool (after truncation), at least one True.
        unit_combiner: ``[M, N_r, S]`` beamformers with unit Frobenius norm per subcarrier.
    """
    traces = stream_traces(channels, unit_combiner)  # (K, M)
    participating = participating & torch.isfinite(traces).all(dim=-1)
    cost = weights[:, None] ** 2 * traces
    zeta = torch.where(participating[:, None], cost, torch.zeros_like(cost)).amax(dim=0)  # (M,)
    combiner = zeta.sqrt().to(unit_combiner.dtype)[:, None, None] * unit_combiner
    precoders = torch.zeros(
        (*channels.shape[:2], channels.shape[-1], unit_combiner.shape[-1]),
        dtype=channels.dtype,
        device=channels.device,
    )
    if participating.any():
        precoders[participating] = zf_precoders(
            channels[participating], combiner, weights[participating]
        )
    return AirCompPlan(
        channels=channels,
        precoders=precoders,
        combiner=combiner,
        participating=participating,
        mse_per_real=combiner.abs().pow(2).sum(dim=1),  # (M, S): ||a_ms||^2
        eta=1.0 / zeta,
    )
