"""Hand-built uploads and orthogonal LoRA factors for the compression tests."""

from __future__ import annotations

import torch

from lit_airlora.federated.upload import Upload

MODULES = ("layers.0.q_proj", "layers.0.v_proj")
DIMS = {"layers.0.q_proj": (12, 10), "layers.0.v_proj": (12, 6)}  # (d_in, d_out)


def orthogonal_factors(
    d_in: int, d_out: int, singular: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``A: [r, d_in]`` with orthogonal rows, ``B: [d_out, r]`` with orthogonal columns,
    ``||b_i|| ||a_i|| = singular[i]`` with an uneven split of each magnitude between b_i and a_i."""
    r = singular.numel()
    u, _ = torch.linalg.qr(torch.randn(d_out, r, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d_in, r, generator=generator, dtype=torch.float64))
    split = torch.rand(r, generator=generator, dtype=torch.float64) + 0.5
    B = u * (singular.double() * split).sqrt()
    A = (singular.double() / split).sqrt()[:, None] * v.T
    return A.float(), B.float()


def random_adapter(max_rank: int, generator: torch.Generator, scale: float = 1.0) -> dict:
    """Name -> factor of random tensors for :data:`MODULES` at ``max_rank``."""
    out = {}
    for module in MODULES:
        d_in, d_out = DIMS[module]
        out[f"{module}.lora_A"] = scale * torch.randn(max_rank, d_in, generator=generator)
        out[f"{module}.lora_B"] = scale * torch.randn(d_out, max_rank, generator=generator)
    return out


def make_upload(
    client_id: int, max_rank: int, rank: int, generator: torch.Generator, weight: float = 1.0
) -> Upload:
    """A random update, zero outside the active ranks."""
    tensors = random_adapter(max_rank, generator, scale=0.1)
    for name, value in tensors.items():
        if name.endswith("lora_A"):
            value[rank:] = 0
        else:
            value[:, rank:] = 0
    return Upload(client_id, tensors, dict.fromkeys(MODULES, rank), weight)
