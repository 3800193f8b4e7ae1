"""Batch statistics AirLLM puts in its state: normalised token entropy and unknown-token rate.

**Unknown-token rate** (our definition, documented in the README): the fraction of a batch's
text tokens (padding and special tokens other than a dedicated unknown token excluded) that
stand for text the vocabulary has no piece for:

- the tokenizer's dedicated unknown token (``unk_token_id``, when it is not also its BOS, EOS
  or padding token, as in GPT-2-style vocabularies where one string plays all roles);
- SentencePiece byte-fallback pieces ``<0xNN>`` (Llama, Mistral);
- in byte-level BPE (GPT-2, SmolLM2, Qwen), a token that is one raw non-ASCII byte (``>= 0x80``):
  a character no merge covers, spelled byte by byte (ASCII bytes are ordinary characters);
- in byte tokenizers (ByT5), the same: a non-ASCII byte token.

The official AirLLM code counts only ``unk_token_id`` after dropping special tokens, which is
always 0 for byte-level vocabularies; the byte-fallback rule gives the state a live signal there.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor

_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


def unknown_token_table(tokenizer) -> Tensor:
    """``[len(tokenizer)]`` bool: which ids count as unknown (see the module docstring)."""
    size = len(tokenizer)
    table = torch.zeros(size, dtype=torch.bool)
    unk = tokenizer.unk_token_id
    others = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    if unk is not None and unk not in others and unk < size:
        table[unk] = True
    byte_of = _single_byte_decoder(tokenizer)
    special = set(tokenizer.all_special_ids)
    for index, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(size)))):
        if index in special or not isinstance(token, str):
            continue
        if _BYTE_PIECE.match(token) or byte_of(token) >= 0x80:
            table[index] = True
    return table


def _single_byte_decoder(tokenizer):
    """Token string -> its byte if the token is a single raw byte, else -1."""
    if type(tokenizer).__name__.startswith("ByT5"):
        return lambda token: ord(token) if len(token) == 1 and ord(token) < 256 else -1
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and "ByteLevel" in type(backend.decoder).__name__:
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        decoder = {char: byte for byte, char in bytes_to_unicode().items()}
        return lambda token: decoder.get(token, -1) if len(token) == 1 else -1
    return lambda token: -1


def text_token_mask(input_ids: Tensor, attention_mask: Tensor | None, ignore_ids: Tensor) -> Tensor:
    """``[B, T]`` bool: attended tokens that are not in ``ignore_ids`` (``[K]`` int64)."""
    mask = torch.ones_like(input_ids, dtype=torch.bool)
    if attention_mask is not None:
        mask &= attention_mask.bool()
    return mask & ~torch.isin(input_ids, ignore_ids.to(input_ids.device))


def batch_token_stats(
    input_ids: Tensor, text_mask: Tensor, unknown: Tensor, vocab_size: int
) -> tuple[float, float, float]:
    """``(normalised entropy, unknown count, token count)`` of the masked tokens of a batch.

    Entropy of the batch's token histogram divided by ``log(vocab_size)`` (in ``[0, 1]``).
    """
    tokens = input_ids[text_mask].flatten().cpu()
    if tokens.numel() == 0:
        return 0.0, 0.0, 0.0
    counts = torch.bincount(tokens).double()
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * p.log()).sum() / math.log(max(vocab_size, 2)))
    unknown_count = float(unknown[tokens.clamp(max=len(unknown) - 1)].sum())
    return entropy, unknown_count, float(tokens.numel())


def ignored_ids(tokenizer, unknown: Tensor) -> Tensor:
    """Special ids left out of the statistics (a dedicated unknown token stays in)."""
    special = [i for i in tokenizer.all_special_ids if i is not None and not bool(unknown[i])]
    return torch.tensor(sorted(set(special)), dtype=torch.int64)
