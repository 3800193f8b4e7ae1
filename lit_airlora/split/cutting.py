"""Cutting a Hugging Face decoder into user / edge / cloud tiers at two cut points.

Cut points ``[c1, c2]`` count transformer blocks: the user holds the embeddings and blocks
``[0, c1)``, the edge blocks ``[c1, c2)``, the cloud blocks ``[c2, L)``, the final norm and the
LM head (a tied head is a second copy of the embedding matrix at the cloud). Every tier holds at
least one block, so no cut falls inside the embedding or the head stage.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

#: ``model_type`` of the decoders whose blocks run one after another on ``(hidden, mask,
#: rotary)`` with no embedding scale (checked against the unsplit model in tests/split).
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")

TIER_NAMES = ("user", "edge", "cloud")

_BLOCK = re.compile(r"(?:^|\.)layers\.(\d+)\.")


@dataclass(frozen=True)
class TierSpec:
    """The blocks one tier runs.

    Attributes:
        name: ``"user"``, ``"edge"`` or ``"cloud"``.
        start: First block (inclusive).
        end: Last block (exclusive).
        has_embedding: The first tier: it runs the token embeddings.
        has_head: The last tier: it runs the final norm, the head and the loss.
    """

    name: str
    start: int
    end: int
    has_embedding: bool = False
    has_head: bool = False


def check_architecture(model_type: str) -> None:
    """Refuse a decoder whose tiers cannot be run block by block."""
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"`model` has architecture {model_type!r}, which the split does not support; "
            f"supported model types: {list(SUPPORTED_MODEL_TYPES)} (Llama family, SmolLM2, "
            "Mistral, Qwen2/3). Use one of them or the unsplit FederatedLoRAModule."
        )


def check_cut_points(
    cut_points: list[int], num_layers: int, num_cuts: int = 2, name: str = "cut_points"
) -> tuple[int, ...]:
    """Validate cut points against the number of transformer blocks; returns them as a tuple."""
    if not isinstance(cut_points, list | tuple) or len(cut_points) != num_cuts:
        raise ValueError(f"`{name}` ({cut_points!r}) must be a list of {num_cuts} block indices.")
    if any(not isinstance(c, int) or isinstance(c, bool) for c in cut_points):
        raise TypeError(f"`{name}` ({cut_points!r}) must hold integers (block counts).")
    cuts = tuple(cut_points)
    if any(b <= a for a, b in itertools.pairwise(cuts)):
        raise ValueError(f"`{name}` ({list(cuts)}) must be strictly increasing, e.g. [2, 4].")
    if cuts[0] < 1:
        raise ValueError(
            f"`{name}` ({list(cuts)}): a cut at {cuts[0]} falls inside the embedding stage (the "
            f"user would hold no block); cuts must be in [1, {num_layers - 1}]."
        )
    if cuts[-1] > num_layers - 1:
        raise ValueError(
            f"`{name}` ({list(cuts)}): a cut at {cuts[-1]} falls inside the head stage or beyond "
            f"the model's {num_layers} blocks (the cloud would hold no block); cuts must be in "
            f"[1, {num_layers - 1}]."
        )
    return cuts


def tier_specs(cut_points: tuple[int, ...], num_layers: int) -> list[TierSpec]:
    """The tiers for validated cut points: 3 tiers for 2 cuts, user and server for 1 cut."""
    bounds = [0, *cut_points, num_layers]
    names = TIER_NAMES if len(cut_points) == 2 else ("user", "server")
    spans = list(zip(names, bounds[:-1], bounds[1:], strict=True))
    last = len(spans) - 1
    return [TierSpec(n, a, b, i == 0, i == last) for i, (n, a, b) in enumerate(spans)]


def tier_of(module_name: str, specs: list[TierSpec]) -> str:
    """Tier holding an adapted module (``"model.layers.3.self_attn.q_proj"`` -> ``"edge"``)."""
    match = _BLOCK.search(module_name)
    if match is None:  # embeddings belong to the user, the head and final norm to the cloud
        return specs[0].name if "embed" in module_name else specs[-1].name
    block = int(match.group(1))
    return next(s.name for s in specs if s.start <= block < s.end)


def tier_modules(modules: list[str], specs: list[TierSpec]) -> dict[str, list[str]]:
    """Adapted modules of each tier; refuses a tier without one (it could not train)."""
    found = {s.name: [m for m in modules if tier_of(m, specs) == s.name] for s in specs}
    for spec in specs:
        if not found[spec.name]:
            raise ValueError(
                f"`lora.target_modules` adapts no layer of the {spec.name} tier (blocks "
                f"{spec.start}-{spec.end - 1}), which could not train: target modules every "
                "block has (e.g. [q_proj, v_proj])."
            )
    return found
