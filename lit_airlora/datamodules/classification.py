"""The federated classification datamodule: labelled examples instead of packed blocks."""

from __future__ import annotations

from typing import Any

import torch
from typing_extensions import override

from lit_airlora.datamodules.blocks import ClientBlockDataset
from lit_airlora.datamodules.examples import ClientExampleDataset, Examples, tokenize_examples
from lit_airlora.datamodules.federated import FederatedTextDataModule
from lit_airlora.datamodules.labels import encode_labels
from lit_airlora.datamodules.packing import num_validation_blocks, special_ids
from lit_airlora.datamodules.sources import Record
from lit_airlora.seeding import make_generator

#: Key separating the per-client example order from the schedule's other streams.
EXAMPLES_STREAM = 0xE4A


class FederatedClassificationDataModule(FederatedTextDataModule):
    """Labelled texts for federated sequence classification, one round per epoch.

    The same clients, partitioners (IID, Dirichlet over labels, Natural), round schedule and
    DDP sharding as :class:`FederatedTextDataModule`, with one sample per record instead of
    packed blocks: each text is tokenised (with the tokenizer's special tokens), cut to its
    first ``seq_len`` tokens and right-padded, and carries its class id in ``labels``
    (see :func:`~lit_airlora.datamodules.labels.encode_labels`; the class names are kept in
    ``label_names`` for the logs). Each client's records are shuffled with a generator seeded
    by ``(seed, client)``, capped at ``max_samples_per_client``, and the first ``val_fraction``
    of them (at least one when the client has two or more) join the pooled validation set, so
    validation is not skewed towards the classes listed last. A client's aggregation weight is
    its number of training examples. The task (``SequenceClassification``) checks that the
    head has at least as many outputs as the data has classes.

    Args: as :class:`FederatedTextDataModule` (``seq_len``: tokens kept per text; ``batch_size``
    and ``val_batch_size``: examples per batch; ``source``: a source with labels, e.g.
    ``BBCNews`` or ``LocalFiles(label_column=...)``).
    """

    _unit = "examples"

    _part_type = Examples
    label_names: list[str] | None = None

    @override
    def _check_records(self, records: list[Record]) -> None:
        self._label_ids, self.label_names = encode_labels(records)

    @override
    def _setup_extras(self) -> dict[str, Any]:
        return {"label_names": list(self.label_names or [])}

    @override
    def _dataset(self, parts: list[Examples]) -> ClientBlockDataset:
        return ClientExampleDataset(parts, self.client_sizes)

    @override
    def _pack(
        self, tokenizer: Any, records: list[Record], clients: list[list[int]]
    ) -> tuple[list[Examples], list[Examples]]:
        _, pad_id = special_ids(tokenizer)
        train: list[Examples] = []
        val: list[Examples] = []
        for client_id, indices in enumerate(clients):
            order = torch.randperm(
                len(indices), generator=make_generator(self.seed, EXAMPLES_STREAM, client_id)
            )
            chosen = [indices[i] for i in order[: self.max_samples_per_client].tolist()]
            examples = tokenize_examples(
                tokenizer,
                [records[i]["text"] for i in chosen],
                [self._label_ids[i] for i in chosen],
                self.seq_len,
                pad_id,
            )
            num_val = num_validation_blocks(len(examples), self.val_fraction)
            positions = torch.arange(len(examples))
            val.append(examples.take(positions[:num_val]))
            train.append(examples.take(positions[num_val:]))
        return train, val
