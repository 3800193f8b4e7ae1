"""Rank masks over a max-rank peft LoRA model.

LoRA is allocated once at ``max_rank``; each adapted module keeps an active rank ``r`` and a
forward hook scales the output of its ``lora_A`` by ``mask * max_rank / r``. The first ``r``
components are active, and the effective scaling is ``alpha / r`` exactly as in a peft adapter
of rank ``r`` with the same factors, so outputs and gradients match that adapter. Parameters
never appear or vanish, so optimizers, DDP wrappers and checkpoints are untouched when ranks
change. peft has no rank-resize utility (AdaLoRA masks a max-rank adapter the same way).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lit_airlora.lora.layers import LoraFactors, find_lora_layers


class RankMasks:
    """Active ranks of the LoRA modules of a peft model, applied through forward hooks.

    Args:
        model: A peft model (or any module holding peft LoRA layers).
        adapter_name: The peft adapter to mask.
        rank: Initial active rank of every module (``<= max_rank``).
    """

    def __init__(self, model: nn.Module, adapter_name: str = "default", rank: int | None = None):
        self.layers: dict[str, LoraFactors] = find_lora_layers(model, adapter_name)
        if not self.layers:
            raise ValueError("The model holds no peft LoRA layers to mask.")
        self.max_rank = next(iter(self.layers.values())).max_rank
        start = self.max_rank if rank is None else rank
        self.ranks: dict[str, int] = {}
        self._scales: dict[str, Tensor] = {}
        self._handles = [self._hook(name, f) for name, f in self.layers.items()]
        self.set_ranks(dict.fromkeys(self.layers, start), truncate="none")

    def _hook(self, name: str, factors: LoraFactors):
        def scale_output(_module, _inputs, output):  # (..., max_rank)
            scale = self._scales[name]
            if factors.lora_E is not None:  # SVD form: P diag(e * m) Q
                scale = scale * factors.lora_E
            return output * scale.to(output.dtype)

        return factors.lora_A_module.register_forward_hook(scale_output)

    def remove(self) -> None:
        """Detach the hooks (the model then behaves as a plain max-rank adapter)."""
        for handle in self._handles:
            handle.remove()

    def set_ranks(self, ranks: Mapping[str, int], truncate: str = "importance") -> None:
        """Set active ranks per module; unknown modules or out-of-range ranks raise.

        Args:
            ranks: Module name -> new active rank in ``[1, max_rank]``; absent modules keep theirs.
            truncate: How to lower a rank. ``"importance"`` reorders components by
                ``||b_i|| ||a_i||`` (times ``|e_i|`` in SVD form) first, ``"svd"`` rotates the
                active factors to the SVD of ``B A`` (``B diag(e) A``) first, ``"prefix"`` keeps
                the first components, ``"none"`` only changes the mask. Kept components are
                rescaled so their ``scaling * B A`` is unchanged, dropped columns of ``B`` (entries
                of ``e`` in SVD form) are zeroed: a regrown component starts like a fresh one.
        """
        check_ranks(ranks, self.layers, self.max_rank)
        for name, new_rank in ranks.items():
            old_rank = self.ranks.get(name)
            factors = self.layers[name]
            if old_rank is not None and truncate != "none":
                resize_factors(factors, old_rank, int(new_rank), truncate)
            self.ranks[name] = int(new_rank)
            self._scales[name] = rank_scale(
                self.max_rank, int(new_rank), factors.device, factors.rslora
            )

    def state_dict(self) -> dict[str, int]:
        return dict(self.ranks)

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.set_ranks(state, truncate="none")


def check_ranks(ranks: Mapping[str, int], layers: Mapping[str, object], max_rank: int) -> None:
    """Raise a clear error for unknown module names or ranks outside ``[1, max_rank]``."""
    unknown = sorted(set(ranks) - set(layers))
    if unknown:
        known = ", ".join(sorted(layers)[:4])
        raise ValueError(f"Unknown LoRA modules {unknown[:4]}; known modules look like: {known}.")
    for name, rank in ranks.items():
        if not 1 <= int(rank) <= max_rank:
            raise ValueError(f"rank of `{name}` ({rank}) must be in [1, max_rank={max_rank}].")


def rank_scale(max_rank: int, rank: int, device: torch.device, rslora: bool = False) -> Tensor:
    """Per-component output scale on the first ``rank`` entries (0 after them).

    peft scales a max-rank adapter by ``alpha / max_rank`` (``alpha / sqrt(max_rank)`` with
    rsLoRA); ``max_rank / rank`` (``sqrt(max_rank / rank)``) turns that into a rank-``rank``
    adapter's ``alpha / rank`` (``alpha / sqrt(rank)``).
    """
    scale = torch.zeros(max_rank, device=device)
    scale[:rank] = _scaling_ratio(max_rank / rank, rslora)
    return scale


def _scaling_ratio(ratio: float, rslora: bool) -> float:
    """A ratio of ranks as a ratio of LoRA scalings: ``alpha / r`` goes as ``1 / r``, rsLoRA's
    ``alpha / sqrt(r)`` as ``1 / sqrt(r)``."""
    return ratio**0.5 if rslora else ratio


def component_importance(lora_A: Tensor, lora_B: Tensor) -> Tensor:
    """SOFT's per-rank importance ``s_i = ||b_i|| ||a_i||``: ``[max_rank]``, float32.

    Args:
        lora_A: ``[r, d_in]`` rows a_i^T.
        lora_B: ``[d_out, r]`` columns b_i.
    """
    return lora_B.float().norm(dim=0) * lora_A.float().norm(dim=1)


@torch.no_grad()
def resize_factors(factors: LoraFactors, old_rank: int, new_rank: int, truncate: str) -> None:
    """Reorder (importance / SVD) and rescale the factors in place for a rank change."""
    A, B, E = factors.lora_A, factors.lora_B, factors.lora_E  # (r_max, d_in), (d_out, r_max)
    if truncate not in ("importance", "svd", "prefix"):
        raise ValueError(f"`truncate` ({truncate!r}) must be importance, svd, prefix or none.")
    ratio = _scaling_ratio(new_rank / old_rank, factors.rslora)
    if E is not None:
        resize_svd_form(A, B, E, old_rank, new_rank, truncate, ratio)
        return
    if new_rank < old_rank and truncate == "importance":
        order = torch.argsort(component_importance(A[:old_rank], B[:, :old_rank]), descending=True)
        A[:old_rank] = A[:old_rank][order]
        B[:, :old_rank] = B[:, :old_rank][:, order]
    elif new_rank < old_rank and truncate == "svd":
        rotate_to_svd(A, B, old_rank)
    # scaling alpha / r (rsLoRA: alpha / sqrt(r)): keep scaling * B A of the kept components.
    B[:, :new_rank] *= ratio
    B[:, new_rank:] = 0


def resize_svd_form(
    A: Tensor, B: Tensor, E: Tensor, old_rank: int, new_rank: int, truncate: str, ratio: float
):
    """:func:`resize_factors` for ``B diag(E) A`` (in place): reorder by ``|e_i| ||b_i|| ||a_i||``
    or rotate to the exact SVD (``B``, ``A`` orthonormal, ``E`` the singular values); rescale
    ``E`` by ``ratio`` for the new ``alpha / r``; zero the dropped ``e_i`` (their ``b_i``, ``a_i``
    stay, so a regrown component has a gradient, as in AdaLoRA)."""
    if new_rank < old_rank and truncate == "importance":
        importance = component_importance(A[:old_rank], B[:, :old_rank]) * E[:old_rank].abs()
        order = torch.argsort(importance, descending=True)
        A[:old_rank], E[:old_rank] = A[:old_rank][order], E[:old_rank][order]
        B[:, :old_rank] = B[:, :old_rank][:, order]
    elif new_rank < old_rank and truncate == "svd":
        qa, ra = torch.linalg.qr(A[:old_rank].float().T)  # (d_in, r), (r, r)
        qb, rb = torch.linalg.qr((B[:, :old_rank] * E[:old_rank]).float())  # (d_out, r), (r, r)
        u, s, vh = torch.linalg.svd(rb @ ra.T)
        B[:, :old_rank] = (qb @ u).to(B.dtype)
        A[:old_rank] = (vh @ qa.T).to(A.dtype)
        E[:old_rank] = s.to(E.dtype)
    E[:new_rank] *= ratio
    E[new_rank:] = 0


def rotate_to_svd(A: Tensor, B: Tensor, rank: int) -> None:
    """Rewrite the first ``rank`` components so that ``B A`` is in SVD form (in place).

    Uses QR of both factors, so the cost is ``O(r^2 (d_in + d_out))``, never forming ``B A``.
    Components with a zero singular value (below 1e-6 of the largest; all of them for a fresh
    adapter, whose ``B`` is zero) keep a zero ``b_i`` and an ``a_i`` of the factor's mean row
    norm: ``B A`` is the same, and the component still has a gradient (``a_i = 0`` and
    ``b_i = 0`` would never train).
    """
    qa, ra = torch.linalg.qr(A[:rank].float().T)  # (d_in, r), (r, r)
    qb, rb = torch.linalg.qr(B[:, :rank].float())  # (d_out, r), (r, r)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    root = s.sqrt()
    row_norm = A[:rank].float().norm(dim=1).mean()
    a_scale = torch.where(s > s.max() * 1e-6, root, row_norm)  # 0 where B's column is 0
    b_scale = torch.where(s > s.max() * 1e-6, root, torch.zeros_like(root))
    B[:, :rank] = ((qb @ u) * b_scale).to(B.dtype)
    A[:rank] = ((a_scale[:, None] * vh) @ qa.T).to(A.dtype)
