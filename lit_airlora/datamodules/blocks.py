"""The packed-block dataset of a federation: blocks tagged with their client."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lit_airlora.datamodules.packing import Blocks

#: Label of positions that carry no next-token target (ignored by the causal-LM loss).
IGNORE_INDEX = -100


class ClientBlockDataset(Dataset):
    """The blocks of several clients, client after client.

    A sample is one block: ``input_ids``, ``attention_mask`` and ``labels`` (``[T]``; labels
    equal the input ids, ``-100`` on padding; the model shifts them), ``client_id`` and
    ``client_weight`` (0-d; the client's number of training blocks), so the default collate
    gives ``[B, T]`` tensors and ``[B]`` ``client_id`` (int64) / ``client_weight`` (float32).

    Args:
        client_blocks: Packed blocks of each client (client ``i`` at position ``i``).
        client_weights: Aggregation weight of each client.
    """

    def __init__(self, client_blocks: Sequence[Blocks], client_weights: Sequence[float]):
        self.sizes = [len(b) for b in client_blocks]
        seq_len = client_blocks[0].input_ids.shape[1] if client_blocks else 0
        self.input_ids = torch.cat([b.input_ids for b in client_blocks]).view(-1, seq_len)
        self.num_tokens = torch.cat([b.num_tokens for b in client_blocks])
        counts = torch.tensor(self.sizes, dtype=torch.long)
        self.client_ids = torch.repeat_interleave(torch.arange(len(self.sizes)), counts)
        self.client_weights = torch.tensor(list(client_weights), dtype=torch.float32)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        input_ids = self.input_ids[index]  # (T,)
        mask = torch.arange(input_ids.shape[0]) < self.num_tokens[index]
        client_id = self.client_ids[index]
        return {
            "input_ids": input_ids,
            "attention_mask": mask.long(),
            "labels": torch.where(mask, input_ids, IGNORE_INDEX),
            "client_id": client_id,
            "client_weight": self.client_weights[client_id],
        }


class RankShard(Dataset):
    """DDP rank ``rank``'s share ``rank::world_size`` of an evaluation set, padded with ignored
    samples (every label ``-100``) so every rank runs the same number of batches.

    The padding adds no token to a perplexity or loss that ignores ``-100``, so the metrics
    summed over ranks equal the single-process ones (up to float summation order).

    Args:
        dataset: The evaluation set (samples with ``labels``).
        rank: This process's global rank.
        world_size: Number of processes.
    """

    def __init__(self, dataset: Dataset, rank: int = 0, world_size: int = 1):
        self.dataset = dataset
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.world_size)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        position = self.rank + index * self.world_size
        if position < len(self.dataset):
            return self.dataset[position]
        sample = dict(self.dataset[0])
        sample["labels"] = torch.full_like(sample["labels"], IGNORE_INDEX)
        return sample
