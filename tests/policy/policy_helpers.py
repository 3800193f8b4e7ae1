"""Observations for policy tests: OPT-1.3B adapter shapes and random small ones."""

from __future__ import annotations

import torch

from lit_airlora.policy.observation import Observation

OPT_LAYERS = 24
OPT_HIDDEN = 2048
OPT_FFN = 8192


def opt_1p3b_shapes() -> dict[str, tuple[int, int]]:
    """The 144 AirLLM adapters of OPT-1.3B: q, k, v, out_proj, fc1, fc2 of 24 layers."""
    shapes = {}
    for layer in range(OPT_LAYERS):
        prefix = f"model.decoder.layers.{layer}"
        for name in ("q_proj", "k_proj", "v_proj"):
            shapes[f"{prefix}.self_attn.{name}"] = (OPT_HIDDEN, OPT_HIDDEN)
        shapes[f"{prefix}.self_attn.out_proj"] = (OPT_HIDDEN, OPT_HIDDEN)
        shapes[f"{prefix}.fc1"] = (OPT_HIDDEN, OPT_FFN)
        shapes[f"{prefix}.fc2"] = (OPT_FFN, OPT_HIDDEN)
    return shapes


def observation(shapes, snr_db, max_rank=8, rank=None, round_idx=0) -> Observation:
    rank = max_rank if rank is None else rank
    return Observation(
        round_idx=round_idx,
        ranks=dict.fromkeys(shapes, rank),
        max_rank=max_rank,
        shapes=dict(shapes),
        snr_db=torch.as_tensor(snr_db, dtype=torch.float64).reshape(-1),
    )


def random_observation(generator: torch.Generator) -> Observation:
    """A random small observation: 1-6 modules, max_rank 1-8, random channel and spectra."""
    num_modules = int(torch.randint(1, 7, (), generator=generator))
    max_rank = int(torch.randint(1, 9, (), generator=generator))
    dims = torch.randint(max_rank, 64, (num_modules, 2), generator=generator).tolist()
    shapes = {f"m{i}": (d_in, d_out) for i, (d_in, d_out) in enumerate(dims)}
    ranks = torch.randint(1, max_rank + 1, (num_modules,), generator=generator).tolist()
    num_clients = int(torch.randint(1, 5, (), generator=generator))

    def spectrum() -> torch.Tensor:
        values = torch.rand(max_rank, generator=generator) * 10 ** (
            4 * torch.rand((), generator=generator) - 2
        )
        return values.sort(descending=True).values

    return Observation(
        round_idx=int(torch.randint(0, 100, (), generator=generator)),
        ranks=dict(zip(shapes, ranks, strict=True)),
        max_rank=max_rank,
        shapes=shapes,
        snr_db=-20 + 50 * torch.rand(num_clients, generator=generator, dtype=torch.float64),
        importance={name: torch.rand(max_rank, generator=generator) for name in shapes},
        update_spectrum={name: spectrum() for name in shapes},
        update_value_power=float(torch.rand((), generator=generator)),
    )
