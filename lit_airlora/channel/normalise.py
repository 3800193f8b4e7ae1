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
rank among the round's participants (HetLoRA-style zero padding for lower ranks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from lit_airlora.federated.upload import Upload, active_rank_mask, module_of


def block_layout(
    template: Mapping[str, Tensor], names: Sequence[str], ranks: Mapping[str, int]
) -> dict[str, Tensor]:
    """Entries on the air per tensor: the active-rank block of ``ranks`` (module -> rank)."""
    return {n: active_rank_mask(n, template[n], ranks) for n in names}


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
    """Distinct adapted modules of tensor names, in first-seen order."""
    return list(dict.fromkeys(module_of(n) for n in names))


def client_stats(upload: Upload, names: Sequence[str]) -> Tensor:
    """``[T, 2]`` float64: mean and standard deviation of the entries sent, per tensor."""
    rows = []
    for name in names:
        values = upload.tensors[name][upload.sent_mask(name)].double()
        if values.numel() == 0:
            rows.append(torch.zeros(2, dtype=torch.float64, device=values.device))
        else:
            rows.append(torch.stack([values.mean(), values.std(correction=0)]))
    return torch.stack(rows)


def common_scale(stats: Tensor, participating: Tensor) -> Tensor:
    """``[T]`` shared scale per tensor: the largest participating standard deviation."""
    return stats[participating][..., 1].amax(dim=0)


def pack(
    upload: Upload, names: Sequence[str], layout: Mapping[str, Tensor], stats: Tensor, scale: Tensor
) -> Tensor:
    """The client's normalised payload ``z: [D]`` float64 (concatenated layout entries)."""
    parts = []
    for t, name in enumerate(names):
        x = upload.tensors[name].double()
        z = (x - stats[t, 0]) / scale[t] if scale[t] > 0 else torch.zeros_like(x)
        z = torch.where(upload.sent_mask(name), z, torch.zeros_like(z))
        parts.append(z[layout[name]])
    return torch.cat(parts)


def unpack(
    z: Tensor, names: Sequence[str], layout: Mapping[str, Tensor], scale: Tensor
) -> dict[str, Tensor]:
    """Inverse of :func:`pack` up to the mean: tensors ``scale_t * z`` (zero off the layout)."""
    out, offset = {}, 0
    for t, name in enumerate(names):
        mask = layout[name]
        count = int(mask.sum())
        full = torch.zeros(mask.shape, dtype=z.dtype, device=z.device)
        full[mask] = z[offset : offset + count] * scale[t]
        out[name], offset = full, offset + count
    return out


def mean_upload(upload: Upload, names: Sequence[str], stats: Tensor) -> Upload:
    """The side-information part of an upload: ``mu_kt`` on its sent entries, per tensor."""
    tensors = {
        n: torch.where(upload.sent_mask(n), stats[t, 0], 0.0).to(torch.float64)
        for t, n in enumerate(names)
    }
    return upload.replace(tensors=tensors)


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
