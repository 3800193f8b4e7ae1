"""Several clients' local steps in one forward/backward, each client's step exactly its own."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_airlora.lora.layers import LoraFactors
from lit_airlora.lora.masks import rank_scale
from lit_airlora.lora.stacked import StackedFactors, routed_lora


class ClientStep(NamedTuple):
    """One client's part of a stacked step.

    Attributes:
        task_loss: The client's mean next-token loss on its batch (0-d, detached).
        stepped: Whether its optimizer stepped (``False``: non-finite loss or gradient).
    """

    task_loss: Tensor
    stepped: bool


class ClientStack:
    """C clients' adapters trained together: the j-th batches of all clients go through the
    frozen base model in one forward/backward (:func:`lit_airlora.lora.stacked.routed_lora`).

    The loss is the sum of the clients' own mean losses, and each client's factors are separate
    leaf tensors that only its rows touch, so each gradient is exactly that client's. Then, per
    client as in the sequential loop: a non-finite loss or gradient skips its step, its gradient
    is clipped by its own norm (``torch.nn.utils.clip_grad_norm_``, as Lightning clips), and its
    own optimizer steps. Results equal the clients' steps in turn up to float summation order
    (the base model's matmuls over a larger batch block their sums differently).

    Args:
        model: The peft model (frozen base, LoRA layers; causal-LM logits).
        layers: Its LoRA layers (``find_lora_layers``).
        starts: Per client, the adapter it starts from (``"<module>.lora_A"`` / ``".lora_B"``).
        ranks: Per client, module name -> active rank.
        trained: Factor names the clients train, in the order their optimizers take them.
        make_optimizer: Builds one client's optimizer over its trained tensors.
        max_norm: Clip each client's gradient to this norm (``None`` or 0: no clipping).
        backward: Runs the backward pass of the summed loss (default ``Tensor.backward``).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Mapping[str, LoraFactors],
        starts: Sequence[Mapping[str, Tensor]],
        ranks: Sequence[Mapping[str, int]],
        trained: Sequence[str],
        make_optimizer: Callable[[list[Tensor]], torch.optim.Optimizer],
        max_norm: float | None = None,
        backward: Callable[[Tensor], None] = Tensor.backward,
    ) -> None:
        if len(starts) != len(ranks):
            raise ValueError(f"{len(starts)} start adapters but {len(ranks)} rank maps.")
        self.model, self.layers = model, layers
        self.ranks = [dict(r) for r in ranks]
        self.trained, self.max_norm, self.backward = list(trained), max_norm, backward
        self.tensors = [self._client_tensors(start) for start in starts]
        self.optimizers = [make_optimizer(self.trained_tensors(c)) for c in range(len(starts))]
        self.scales = {name: self._scales(name, f) for name, f in layers.items()}  # [C, r]

    def _client_tensors(self, start: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The client's own copies of every factor, leaves with a gradient where trained."""
        tensors = {}
        for name, factors in self.layers.items():
            for kind, param in (("lora_A", factors.lora_A), ("lora_B", factors.lora_B)):
                key = f"{name}.{kind}"
                value = start[key].detach().to(device=param.device, dtype=param.dtype).clone()
                tensors[key] = value.requires_grad_(key in self.trained)
        return tensors

    def _scales(self, name: str, factors: LoraFactors) -> Tensor:
        max_rank, device, rslora = factors.max_rank, factors.device, factors.rslora
        return torch.stack([rank_scale(max_rank, r[name], device, rslora) for r in self.ranks])

    def trained_tensors(self, client: int) -> list[Tensor]:
        """Client ``client``'s trained tensors, in the order of ``trained``."""
        return [self.tensors[client][name] for name in self.trained]

    def adapter(self, client: int) -> dict[str, Tensor]:
        """Float32 copies of client ``client``'s factors."""
        return {n: t.detach().float().clone() for n, t in self.tensors[client].items()}

    def step(self, batches: Sequence[Mapping[str, Tensor] | None]) -> list[ClientStep | None]:
        """One local step of every client with a batch (``None``: the client sits this one out).

        Args:
            batches: Per client, ``input_ids``, ``attention_mask`` and ``labels``, each
                ``[rows_c, seq]`` (the same ``seq`` for all), or ``None``.

        Returns:
            Per client, its loss and whether it stepped (``None`` where it had no batch).
        """
        active = [c for c, batch in enumerate(batches) if batch is not None]
        if not active:
            return [None] * len(batches)
        losses = self._losses(active, [batches[c] for c in active])
        finite = [bool(torch.isfinite(loss)) for loss in losses]
        kept = [loss for loss, ok in zip(losses, finite, strict=True) if ok]
        total = sum(kept, start=losses[0].new_zeros(()))
        if any(finite):
            self.backward(total)
        results: list[ClientStep | None] = [None] * len(batches)
        for slot, client in enumerate(active):
            stepped = finite[slot] and self._update(client)
            results[client] = ClientStep(losses[slot].detach(), stepped)
        return results

    def _losses(self, active: list[int], batches: list[Mapping[str, Tensor]]) -> list[Tensor]:
        """Each active client's mean next-token loss, from one forward of all their rows."""
        lengths = {int(b["input_ids"].shape[1]) for b in batches}
        if len(lengths) > 1:
            raise ValueError(f"Stacked clients need batches of one sequence length; got {lengths}.")
        rows = [int(b["input_ids"].shape[0]) for b in batches]
        factors = self._stacked_factors(active)
        inputs = {k: torch.cat([b[k] for b in batches]) for k in ("input_ids", "attention_mask")}
        with routed_lora(self.layers, factors, rows):
            logits = self.model(**inputs).logits  # (N, T, V), N = sum(rows)
        return per_client_next_token_loss(logits, torch.cat([b["labels"] for b in batches]), rows)

    def _stacked_factors(self, active: list[int]) -> dict[str, StackedFactors]:
        stacked = {}
        for name in self.layers:
            a = torch.stack([self.tensors[c][f"{name}.lora_A"] for c in active])  # (C, r, d_in)
            b = torch.stack([self.tensors[c][f"{name}.lora_B"] for c in active])  # (C, d_out, r)
            scale = self.scales[name][active]  # (C, r)
            stacked[name] = StackedFactors(a, b, scale)
        return stacked

    def _update(self, client: int) -> bool:
        """Clip and step client ``client`` if its gradient is finite; clear it either way."""
        tensors = self.trained_tensors(client)
        grads = [t.grad for t in tensors if t.grad is not None]
        finite = all(bool(g.isfinite().all()) for g in grads)
        optimizer = self.optimizers[client]
        if finite:
            if self.max_norm:
                torch.nn.utils.clip_grad_norm_(tensors, self.max_norm)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return finite


def per_client_next_token_loss(logits: Tensor, labels: Tensor, rows: Sequence[int]) -> list[Tensor]:
    """Each client's mean cross-entropy of ``logits[:, t]`` against ``labels[:, t + 1]`` (-100
    ignored): :func:`~lit_airlora.tasks.causal_lm.next_token_loss` of its rows, summed in
    another order.

    One cross-entropy over all rows, on the contiguous logits (targets shifted instead of logits
    sliced): slicing rows or positions out of the stacked logits would make every slice's
    backward fill a zero gradient as large as all the logits.

    Args:
        logits: ``[N, T, V]``, the stacked clients' rows (any floating dtype; float32 loss).
        labels: ``[N, T]``, int64, -100 where not scored.
        rows: Rows of each client, in order (they sum to ``N``).
    """
    targets = torch.full_like(labels, -100)
    targets[:, :-1] = labels[:, 1:]  # (N, T): the token each position predicts
    flat = logits.reshape(-1, logits.shape[-1]).float()  # (N*T, V), a view when contiguous
    token_loss = F.cross_entropy(flat, targets.reshape(-1), ignore_index=-100, reduction="none")
    scored = targets != -100
    return [
        loss.sum() / mask.sum()
        for loss, mask in zip(
            token_loss.view_as(labels).split(rows), scored.split(rows), strict=True
        )
    ]
