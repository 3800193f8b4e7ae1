"""Causal-LM packing: a client's texts as fixed-length token blocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

#: Texts tokenised per tokenizer call (large enough for fast tokenizers' batching).
TOKENIZE_CHUNK = 256


@dataclass(frozen=True)
class Blocks:
    """Packed token blocks of one stream.

    Attributes:
        input_ids: ``[N, T]``, int64: token ids, right-padded in the last block.
        num_tokens: ``[N]``, int64: real (non-pad) tokens per block; ``T`` except possibly the last.
    """

    input_ids: Tensor
    num_tokens: Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def take(self, start: int, stop: int) -> Blocks:
        """Blocks ``start:stop``."""
        return Blocks(self.input_ids[start:stop], self.num_tokens[start:stop])


def pack_tokens(
    token_lists: Sequence[Sequence[int]],
    seq_len: int,
    eos_id: int,
    pad_id: int,
    max_blocks: int | None = None,
) -> Blocks:
    """Concatenate texts, each followed by EOS, and cut the stream into ``seq_len`` blocks.

    A trailing partial block is padded with ``pad_id``; it is dropped when it holds fewer
    than two tokens (it would hold no next-token target). At most ``max_blocks`` blocks are
    kept (the first ones).

    Args:
        token_lists: Token ids of each text, without special tokens.
        seq_len: Block length ``T``.
        eos_id: Separator appended after every text.
        pad_id: Filler of the last block.
        max_blocks: Cap on the number of blocks, or ``None``.
    """
    stream = [t for tokens in token_lists for t in (*tokens, eos_id)]
    num_full, rest = divmod(len(stream), seq_len)
    if rest >= 2:
        stream.extend([pad_id] * (seq_len - rest))
    else:
        stream = stream[: num_full * seq_len]
    input_ids = torch.tensor(stream, dtype=torch.long).view(-1, seq_len)  # (N, T)
    num_tokens = torch.full((input_ids.shape[0],), seq_len, dtype=torch.long)
    if rest >= 2:
        num_tokens[-1] = rest
    if max_blocks is not None:
        return Blocks(input_ids[:max_blocks], num_tokens[:max_blocks])
    return Blocks(input_ids, num_tokens)


def tokenize_texts(tokenizer: Any, texts: Sequence[str], max_tokens: int | None = None) -> list:
    """Token ids of each text (no special tokens), stopping once ``max_tokens`` are reached.

    Tokenising stops early so that a cap on a client's blocks also caps the work done.
    """
    token_lists: list[list[int]] = []
    total = 0
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        chunk = list(texts[start : start + TOKENIZE_CHUNK])
        # verbose=False: long texts are cut into blocks later, the length warning does not apply.
        ids = tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]
        token_lists.extend(ids)
        total += sum(len(t) + 1 for t in ids)
        if max_tokens is not None and total >= max_tokens:
            break
    return token_lists


def special_ids(tokenizer: Any) -> tuple[int, int]:
    """``(eos_id, pad_id)`` of a tokenizer; the pad id falls back to EOS (labels mask pads)."""
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError(
            f"The tokenizer ({type(tokenizer).__name__}) has no EOS token; packing separates "
            "texts with it. Use a tokenizer with `eos_token` set."
        )
    pad_id = tokenizer.pad_token_id
    return int(eos_id), int(eos_id if pad_id is None else pad_id)


def num_validation_blocks(num_blocks: int, val_fraction: float) -> int:
    """Blocks of a client held out for validation.

    ``floor(val_fraction * num_blocks)``, but at least one when ``val_fraction > 0`` and the
    client has two or more blocks, and never all of them (a client keeps a training block).
    """
    if val_fraction <= 0 or num_blocks < 2:
        return 0
    return min(max(int(val_fraction * num_blocks), 1), num_blocks - 1)


def pack_client(
    tokenizer: Any,
    texts: Sequence[str],
    seq_len: int,
    val_fraction: float,
    max_blocks: int | None = None,
) -> tuple[Blocks, Blocks]:
    """A client's ``(train, validation)`` blocks; validation takes the last blocks.

    Holding out the tail of the client's stream keeps training and validation text apart
    (no block straddles both).
    """
    eos_id, pad_id = special_ids(tokenizer)
    max_tokens = None if max_blocks is None else max_blocks * seq_len
    blocks = pack_tokens(
        tokenize_texts(tokenizer, texts, max_tokens), seq_len, eos_id, pad_id, max_blocks
    )
    num_val = num_validation_blocks(len(blocks), val_fraction)
    return blocks.take(0, len(blocks) - num_val), blocks.take(len(blocks) - num_val, len(blocks))
