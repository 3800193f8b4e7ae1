"""Running the tiers of a cut decoder: embeddings + blocks, middle blocks, blocks + head.

Each tier rebuilds what the unsplit forward shares between blocks (causal mask, rotary position
embeddings) from the attention mask that travels with the activation, so the chained tiers
compute exactly what the unsplit ``forward`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lit_airlora.split.cutting import TierSpec, check_architecture


@dataclass
class DecoderParts:
    """The pieces of a causal LM the tiers run (shared with the wrapped model, not copied).

    Attributes:
        causal_lm: The ``*ForCausalLM`` module (its ``loss_function``).
        decoder: Its decoder (``embed_tokens``, ``layers``, ``norm``, ``rotary_emb``).
        lm_head: The output projection.
    """

    causal_lm: nn.Module
    decoder: nn.Module
    lm_head: nn.Module

    @classmethod
    def of(cls, model: nn.Module) -> DecoderParts:
        """Parts of a (peft-wrapped or plain) causal LM; refuses unsupported architectures."""
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        check_architecture(getattr(causal_lm.config, "model_type", type(causal_lm).__name__))
        return cls(causal_lm, causal_lm.model, causal_lm.lm_head)

    @property
    def config(self):
        return self.causal_lm.config

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)


def tier_forward(
    parts: DecoderParts,
    spec: TierSpec,
    inputs: Tensor,
    attention_mask: Tensor,
    labels: Tensor | None = None,
) -> Tensor:
    """Run one tier.

    Args:
        parts: The decoder's parts.
        spec: The tier.
        inputs: ``[B, T]`` int64 token ids for the user tier, else ``[B, T, C]`` hidden states.
        attention_mask: ``[B, T]`` 0/1 padding mask (travels with the activation).
        labels: ``[B, T]`` int64 labels (-100 ignored) for the cloud tier.

    Returns:
        ``[B, T, C]`` hidden states, or the scalar loss for the cloud tier.
    """
    hidden = parts.decoder.embed_tokens(inputs) if spec.has_embedding else inputs  # (B, T, C)
    position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    masks = _layer_masks(parts.config, hidden, attention_mask, position_ids)
    rotary = parts.decoder.rotary_emb(hidden, position_ids=position_ids)
    for index in range(spec.start, spec.end):
        hidden = parts.decoder.layers[index](
            hidden,
            attention_mask=masks[_layer_type(parts.config, index)],
            position_embeddings=rotary,
            position_ids=position_ids,
        )
    if not spec.has_head:
        return hidden
    logits = parts.lm_head(parts.decoder.norm(hidden))  # (B, T, V)
    return parts.causal_lm.loss_function(
        logits=logits, labels=labels, vocab_size=parts.config.vocab_size
    )


def _layer_type(config, index: int) -> str:
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return layer_types[index]
    return "sliding_attention" if getattr(config, "sliding_window", None) else "full_attention"


def _layer_masks(config, hidden: Tensor, attention_mask: Tensor, position_ids: Tensor) -> dict:
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    kwargs = {
        "config": config,
        "inputs_embeds": hidden,
        "attention_mask": attention_mask,
        "past_key_values": None,
        "position_ids": position_ids,
    }
    masks = {"full_attention": create_causal_mask(**kwargs)}
    if getattr(config, "sliding_window", None) is not None:
        masks["sliding_attention"] = create_sliding_window_causal_mask(**kwargs)
    return masks
