"""Classification examples: one truncated, right-padded token row and a class id per text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lit_airlora.datamodules.blocks import ClientBlockDataset
from lit_airlora.datamodules.packing import TOKENIZE_CHUNK


@dataclass(frozen=True)
class Examples:
    """Tokenised examples of one client.

    Attributes:
        input_ids: ``[N, T]``, int64: token ids, right-padded with the pad id.
        num_tokens: ``[N]``, int64: real tokens per example (``<= T``).
        labels: ``[N]``, int64: class ids.
    """

    input_ids: Tensor
    num_tokens: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def take(self, index: Tensor) -> Examples:
        """The examples at ``index`` (``[M]`` int64)."""
        return Examples(self.input_ids[index], self.num_tokens[index], self.labels[index])


def tokenize_examples(
    tokenizer: Any, texts: Sequence[str], labels: Sequence[int], seq_len: int, pad_id: int
) -> Examples:
    """Tokenise each text (with the tokenizer's special tokens), keep its first ``seq_len``
    tokens and right-pad it to ``seq_len``."""
    input_ids = torch.full((len(texts), seq_len), pad_id, dtype=torch.long)  # (N, T)
    num_tokens = torch.zeros(len(texts), dtype=torch.long)
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        chunk = list(texts[start : start + TOKENIZE_CHUNK])
        ids = tokenizer(chunk, truncation=True, max_length=seq_len)["input_ids"]
        for row, tokens in enumerate(ids, start=start):
            input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            num_tokens[row] = len(tokens)
    return Examples(input_ids, num_tokens, torch.tensor(list(labels), dtype=torch.long))


class ClientExampleDataset(ClientBlockDataset):
    """The examples of several clients, client after client.

    A sample holds ``input_ids`` and ``attention_mask`` (``[T]``), ``labels`` (0-d class id),
    ``client_id`` and ``client_weight`` (the client's number of training examples), so the
    default collate gives ``[B, T]`` inputs and ``[B]`` labels.

    Args:
        client_examples: Examples of each client (client ``i`` at position ``i``).
        client_weights: Aggregation weight of each client.
    """

    def __init__(self, client_examples: Sequence[Examples], client_weights: Sequence[float]):
        super().__init__(client_examples, client_weights)
        self.labels = torch.cat([e.labels for e in client_examples])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {**super().__getitem__(index), "labels": self.labels[index]}
