"""The split-learning datamodule: one batch per local step holds every stream of this rank."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DataLoader
from typing_extensions import override

from lit_airlora.datamodules.edge_schedule import (
    EdgeSchedule,
    check_edges,
    check_user_selection,
    default_user_edges,
)
from lit_airlora.datamodules.federated import FederatedTextDataModule
from lit_airlora.datamodules.sampler import RoundBatchSampler


class StepBatchSampler(RoundBatchSampler):
    """Local step ``s`` of the round: batch ``s`` of each of this rank's clients, concatenated.

    Split learning runs the round's streams side by side (the cloud steps once per local step
    on all of them), so one loader batch carries one step of every stream; rows keep their
    ``client_id``. Same blocks as :class:`RoundBatchSampler`, in step-major order.
    """

    def __iter__(self) -> Iterator[list[int]]:
        per_client = [
            [
                [self.offsets[client] + i for i in batch]
                for batch in self.schedule.client_batches(
                    self.round_idx, client, self.client_sizes[client], self.batch_size
                )
            ]
            for client in self.clients()
        ]
        for step in range(self.schedule.local_steps):
            yield [index for batches in per_client for index in batches[step]]

    def __len__(self) -> int:
        return self.schedule.local_steps


class SplitTextDataModule(FederatedTextDataModule):
    """Users, edges and one batch per local step for split learning (SplitLLM, SFL).

    With ``num_edges`` set (SplitLLM), every user is attached to an edge (``user_edges``, by
    default user ``u`` -> edge ``u % num_edges``) and each round every edge picks one of its
    users (:class:`EdgeSchedule`): ``E`` streams per round. With ``num_edges=None`` (SFL) the
    round samples ``clients_per_round`` users as federated learning does. Either way one
    training batch is one local step of all of this rank's streams (:class:`StepBatchSampler`),
    each row tagged with its ``client_id`` and ``client_weight``.

    Args:
        num_edges: Edge servers ``E`` (``None``: no edge tier, SFL).
        user_edges: Edge of each user (one entry per user), or ``None`` for ``u % E``.
        user_selection: How an edge picks its user: ``"round_robin"`` or ``"random"``.
        stream_batches: One batch per local step holding every stream (split learning); with
            ``False`` the batches of one client after another, as ``FederatedTextDataModule``
            yields them (federated LoRA on the same users and blocks as SplitLLM).
        **kwargs: :class:`FederatedTextDataModule` arguments (``clients_per_round`` is set to
            ``num_edges`` when edges are given).
    """

    def __init__(
        self,
        num_edges: int | None = 2,
        user_edges: list[int] | None = None,
        user_selection: str = "round_robin",
        stream_batches: bool = True,
        **kwargs,
    ):
        if num_edges is not None:
            num_users = kwargs["partitioner"].num_clients if "partitioner" in kwargs else None
            check_edges(num_edges, num_users, user_edges)
            kwargs["clients_per_round"] = num_edges
        check_user_selection(user_selection)
        super().__init__(**kwargs)
        self.num_edges = num_edges
        self.user_edges = user_edges
        self.user_selection = user_selection
        self.stream_batches = stream_batches

    @override
    def setup(self, stage: str | None = None) -> None:
        fresh = self.schedule is None
        super().setup(stage)
        if fresh and self.num_edges is not None:
            check_edges(self.num_edges, self.num_clients, self.user_edges)
            edges = self.user_edges or default_user_edges(self.num_clients, self.num_edges)
            self.schedule = EdgeSchedule(
                edges, self.num_edges, self.user_selection, self.local_steps, self.seed
            )

    @override
    def train_dataloader(self) -> DataLoader:
        if not self.stream_batches:
            return super().train_dataloader()
        sampler = StepBatchSampler(
            self._ready(self.schedule),
            self.client_sizes,
            self.batch_size,
            self.rank,
            self.world_size,
        )
        return DataLoader(self.train_set, batch_sampler=sampler, num_workers=self.num_workers)
