"""The train loader's batch sampler: one round of the schedule per epoch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import accumulate

from torch.utils.data import Sampler

from lit_airlora.datamodules.schedule import RoundSchedule
from lit_airlora.federated.plan import padded_steps


class RoundBatchSampler(Sampler[list[int]]):
    """Yields the batches of this rank's clients for the current round, client after client,
    then idle batches up to the largest shard's length (so every DDP rank runs as many batches).

    Lightning calls ``set_epoch(epoch)`` before every training epoch; the epoch is the round
    index. Lightning looks for ``set_epoch`` on the loader's ``batch_sampler.sampler``, so this
    sampler is its own ``sampler``. Indices are global block indices of a dataset that stores
    the clients' blocks one client after another (``offsets[k]`` = first block of client k).

    Args:
        schedule: The round schedule.
        client_sizes: Training blocks of each client.
        batch_size: Blocks per batch.
        rank: This process's global rank.
        world_size: Number of processes.
    """

    def __init__(
        self,
        schedule: RoundSchedule,
        client_sizes: Sequence[int],
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__()
        self.schedule = schedule
        self.client_sizes = list(client_sizes)
        self.offsets = [0, *accumulate(self.client_sizes)][:-1]
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.round_idx = 0

    @property
    def sampler(self) -> RoundBatchSampler:
        """This sampler (where Lightning looks for ``set_epoch``)."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Move to round ``epoch``."""
        self.round_idx = epoch

    def clients(self) -> list[int]:
        """Clients this rank simulates in the current round."""
        return self.schedule.rank_clients(self.round_idx, self.rank, self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        clients = self.clients()
        for client in clients:
            size, offset = self.client_sizes[client], self.offsets[client]
            for batch in self.schedule.client_batches(
                self.round_idx, client, size, self.batch_size
            ):
                yield [offset + i for i in batch]
        for _ in range(len(self) - len(clients) * self.schedule.local_steps):
            yield [0]  # idle step: the module trains nothing on it

    def __len__(self) -> int:
        """Batches of the largest shard (ceil(C / W) clients): the same on every rank."""
        return padded_steps(
            self.schedule.clients_per_round, self.schedule.local_steps, self.world_size
        )
