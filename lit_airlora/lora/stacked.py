"""Per-client LoRA factors routed to their own rows of one batch (stacked clients).

A batch that concatenates several clients' batches goes once through the frozen base model;
each adapted layer adds ``scaling * B_c (m_c * (A_c x))`` to the rows of client ``c``, with
``A_c``, ``B_c`` and the rank scale ``m_c`` (see :func:`lit_airlora.lora.masks.rank_scale`)
stacked over clients. It is the masked max-rank adapter's forward (``RankMasks`` scales the
output of ``lora_A`` the same way), batched over clients with ``torch.bmm``.

peft's own mixed-adapter batches (``adapter_names=``) are refused in training mode, need one
registered adapter per client and loop over them; here the factors are plain tensors that the
caller owns (one leaf per client, so each client's gradient and optimizer stay its own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lit_airlora.lora.layers import LoraFactors


@dataclass(frozen=True)
class StackedFactors:
    """One adapted module's factors for the clients of a stacked batch.

    Attributes:
        a: ``[C, max_rank, d_in]``, the clients' ``lora_A`` in stacking order.
        b: ``[C, d_out, max_rank]``, their ``lora_B``.
        scale: ``[C, max_rank]``, each client's rank scale (0 past its active rank).
    """

    a: Tensor
    b: Tensor
    scale: Tensor


def check_routable(layers: Mapping[str, LoraFactors]) -> None:
    """Raise if a layer uses what the routed forward does not compute (one line)."""
    for name, factors in layers.items():
        layer = factors.layer
        if factors.lora_E is not None:
            problem = "an SVD-form adapter (lora.svd_form: true)"
        elif factors.adapter_name in getattr(layer, "lora_variant", {}):
            problem = "a peft LoRA variant (DoRA, aLoRA, ...)"
        elif getattr(layer.lora_B[factors.adapter_name], "bias", None) is not None:
            problem = "a bias on lora_B (lora_bias: true)"
        elif not isinstance(layer.lora_dropout[factors.adapter_name], torch.nn.Identity):
            problem = "LoRA dropout (lora.dropout > 0)"
        else:
            continue
        raise ValueError(
            f"`stacked_clients` trains plain LoRA factors; `{name}` uses {problem}. Remove it "
            "or set `stacked_clients: false`."
        )


@contextlib.contextmanager
def routed_lora(
    layers: Mapping[str, LoraFactors],
    factors: Mapping[str, StackedFactors],
    rows: Sequence[int],
) -> Iterator[None]:
    """Inside the block, every layer of ``factors`` applies the ``c``-th stacked client's
    factors to that client's rows of the batch (instead of the live adapter and its rank mask).

    Args:
        layers: The model's LoRA layers (``find_lora_layers``).
        factors: Module name -> the clients' stacked factors (every layer of ``layers``).
        rows: Batch rows of each stacked client, in stacking order (its rows contiguous):
            equal shares take one ``bmm`` over clients, unequal ones one over rows.
    """
    device = next(iter(factors.values())).a.device
    index = None  # group g is client g
    if len(set(rows)) > 1:
        index = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor(rows)).to(device)
    patched = []
    try:
        for name, layer_factors in layers.items():
            layer = layer_factors.layer
            scaling = layer.scaling[layer_factors.adapter_name]
            layer.forward = _routed_forward(layer, factors[name], scaling, index)
            patched.append(layer)
        yield
    finally:
        for layer in patched:
            del layer.forward  # back to the class's forward


def _routed_forward(layer, stacked: StackedFactors, scaling: float, index: Tensor | None):
    A, B, scale = stacked.a, stacked.b, stacked.scale
    if index is not None:  # one group per row: [N, ...]
        A, B, scale = A[index], B[index], scale[index]

    def forward(x: Tensor, *args, **kwargs) -> Tensor:
        result = layer.base_layer(x, *args, **kwargs)  # (N, T, d_out)
        groups = A.shape[0]
        xg = x.to(A.dtype).reshape(groups, -1, x.shape[-1])  # (G, rows * T, d_in)
        h = torch.bmm(xg, A.transpose(1, 2)) * scale[:, None, :]  # (G, rows * T, r)
        delta = torch.bmm(h, B.transpose(1, 2)) * scaling  # (G, rows * T, d_out)
        return result + delta.reshape(result.shape).to(result.dtype)

    return forward
