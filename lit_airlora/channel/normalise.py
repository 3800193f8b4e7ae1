"""AirComp payloads: normalisation with side information, and mapping reals to channel symbols.

Over-the-air aggregation needs every client to send values of a known power. Each client
computes, per LoRA tensor ``t``, the mean ``mu_kt`` and standard deviation ``sigma_kt`` of the
entries it sends and reports them as error-free side information (2 scalars per tensor). The
server takes the common scale ``s_t = max_k sigma_kt`` over the participating clients, and each
client sends ``z_k = m_k (x_k - mu_kt) / s_t`` (``m_k``: its sent mask): values of variance at
most one, so one power scaling ``eta`` serves every tensor and client. The server adds back
``sum_k w_k mu_kt m_k`` from the side information. [assumed, standard: Zhu et al., "Broadband
analog aggregation for low-latency federated edge learning", IEEE TWC 2020, normalise
with shared statistics.] The payload of a tensor is its active-rank block, with the largest
rank among the round's participants (HeteroFL-style zero padding for lower ranks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lit_airlora.rank_blocks import is_lora_factor, module_of, rank_index


@dataclass(frozen=True)
class ClientValues:
    """What one client puts on the air (the callbacks build it from the client's upload).

    Attributes:
        client_id: The client (its row in the round's channel).
        tensors: Name -> values, full shapes (``lora_A: [max_rank, d_in]``, ...).
        sent: Name -> ``bool`` mask, same shape: the entries the client sends.
        ranks: Adapted module -> active rank.
    """

    client_id: int
    tensors: Mapping[str, Tensor]
    sent: Mapping[str, Tensor]
    ranks: Mapping[str, int]


def block(tensor: Tensor, name: str, rank: int) -> Tensor:
    """View of the active-rank block of a LoRA factor: ``A[:rank]`` or ``B[:, :rank]`` (a
    dense tensor, such as a classification head, is sent whole)."""
    return tensor[rank_index(name, rank)] if is_lora_factor(name) else tensor


def block_layout(names: Sequence[str], ranks: Mapping[str, int]) -> dict[str, int]:
    """Rank of the block on the air per tensor (``ranks``: module -> rank; 0 for dense)."""
    return {n: int(ranks[module_of(n)]) if is_lora_factor(n) else 0 for n in names}


def max_ranks(client_ranks: Tensor, participating: Tensor, modules: Sequence[str]) -> dict:
    """Largest rank per module over the participating clients.

    Args:
        client_ranks: ``[K, num_modules]`` ranks of every client of the round.
        participating: ``[K]`` bool.
        modules: Module names, in the column order of ``client_ranks``.
    """
    rows = client_ranks[participating]  # (K_p, num_modules)
    top = rows.max(dim=0).values if rows.numel() else torch.zeros(len(modules))
    return {m: int(r) for m, r in zip(modules, top.tolist(), strict=True)}


def module_names(names: Sequence[str]) -> list[str]:
    """Distinct adapted modules of LoRA tensor names, in first-seen order."""
    return list(dict.fromkeys(module_of(n) for n in names if is_lora_factor(n)))


def client_stats(client: ClientValues, names: Sequence[str]) -> Tensor:
    """``[T, 2]`` float64: mean and standard deviation of the entries sent, per tensor.

    Masked sums rather than boolean indexing: indexing ~100 small tensors per client costs
    seconds on a busy CPU, element-wise sums a fraction of it.
    """
    rows = []
    for name in names:
        mask = client.sent[name].to(torch.float64)
        x = client.tensors[name].double()
        count = mask.sum().clamp_min(1.0)
        mean = (x * mask).sum() / count
        variance = ((x - mean).pow(2) * mask).sum() / count
        rows.append(torch.stack([mean, variance.sqrt()]))
    return torch.stack(rows)


def common_scale(stats: Tensor, participating: Tensor) -> Tensor:
    """``[T]`` shared scale per tensor: the largest participating standard deviation."""
    return stats[participating][..., 1].amax(dim=0)


def pack(
    client: ClientValues,
    names: Sequence[str],
    layout: Mapping[str, int],
    stats: Tensor,
    scale: Tensor,
) -> Tensor:
    """The client's normalised payload ``z: [D]`` float64 (concatenated layout blocks)."""
    parts = []
    for t, name in enumerate(names):
        x = block(client.tensors[name], name, layout[name]).double()
        sent = block(client.sent[name], name, layout[name])
        inverse_scale = 1.0 / float(scale[t]) if scale[t] > 0 else 0.0
        parts.append(((x - stats[t, 0]) * inverse_scale * sent).reshape(-1))
    return torch.cat(parts)


def unpack(
    z: Tensor,
    names: Sequence[str],
    layout: Mapping[str, int],
    scale: Tensor,
    template: Mapping[str, Tensor],
) -> dict[str, Tensor]:
    """Inverse of :func:`pack` up to the mean: tensors ``scale_t * z`` (zero off the layout)."""
    out, offset = {}, 0
    for t, name in enumerate(names):
        full = torch.zeros(template[name].shape, dtype=z.dtype, device=z.device)
        target = block(full, name, layout[name])
        count = target.numel()
        target.copy_(z[offset : offset + count].view(target.shape) * scale[t])
        out[name], offset = full, offset + count
    return out


def payload_size(template: Mapping[str, Tensor], layout: Mapping[str, int]) -> int:
    """Reals on the air per client: the layout blocks' sizes."""
    return int(sum(block(template[n], n, r).numel() for n, r in layout.items()))


def mean_tensors(client: ClientValues, names: Sequence[str], stats: Tensor) -> dict[str, Tensor]:
    """The side-information part of a client's values: ``mu_kt`` on its sent entries, float64."""
    return {n: client.sent[n].to(torch.float64) * stats[t, 0] for t, n in enumerate(names)}


def num_ofdm_symbols(num_values: int, num_subcarriers: int, num_streams: int) -> int:
    """OFDM symbols for ``num_values`` reals: ``ceil(D / (2 S M))`` (2 reals per symbol)."""
    return math.ceil(num_values / (2 * num_streams * num_subcarriers))


def to_symbols(z: Tensor, num_subcarriers: int, num_streams: int) -> Tensor:
    """Pair reals into unit-energy complex symbols on the grid: ``[T, M, S]`` complex128.

    ``s = (z_{2i} + j z_{2i+1}) / sqrt(2)``: unit-variance reals give ``E|s|^2 = 1``. Symbol
    ``i`` goes to OFDM symbol ``i // (M S)``, subcarrier ``(i // S) % M``, stream ``i % S``;
    the grid is zero-padded.
    """
    num_symbols = num_ofdm_symbols(z.numel(), num_subcarriers, num_streams)
    padded = torch.zeros(2 * num_symbols * num_subcarriers * num_streams, dtype=torch.float64)
    padded = padded.to(z.device)
    padded[: z.numel()] = z
    pairs = padded.view(num_symbols, num_subcarriers, num_streams, 2) / math.sqrt(2.0)
    return torch.view_as_complex(pairs.contiguous())


def from_symbols(symbols: Tensor, num_values: int) -> Tensor:
    """Inverse of :func:`to_symbols`: the first ``num_values`` reals, float64."""
    reals = torch.view_as_real(symbols.contiguous()).reshape(-1) * math.sqrt(2.0)
    return reals[:num_values].double()
