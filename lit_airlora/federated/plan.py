"""The round plan: who trains in a round, on which rank, for how many steps, with which seed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lit_airlora.seeding import round_seed


@dataclass(frozen=True)
class RoundPlan:
    """What one communication round runs, identical on every DDP rank except the rank fields.

    The module builds it at the start of every round (before ``on_round_start``) and publishes
    it as ``pl_module.round_plan`` and ``ctx.plan``; callbacks read it instead of reaching
    into the module or the datamodule.

    Attributes:
        round_idx: Zero-based communication round (the epoch).
        seed: The round's shared seed, ``round_seed(base_seed, round_idx)``: derive per-client
            generators from ``(seed, client_id)`` and shared ones (receiver noise) from ``seed``
            alone, so 1 and N DDP ranks draw the same numbers.
        base_seed: The module's seed the round seed derives from.
        clients: Every client that trains this round (on any rank), sorted. Clients cut off
            entirely by ``limit_train_batches`` / ``max_steps`` are not listed.
        client_weights: Aggregation weight (training blocks) of every client in ``clients``.
        rank_clients: The clients of ``clients`` this rank simulates, in training order.
        local_steps: Local batches per client per round (before truncation).
        steps_this_rank: Batches this rank runs this round: the same on every rank (ranks with
            fewer clients pad with idle steps), truncated by ``limit_train_batches`` and
            ``max_steps``. The round ends after the last of them.
        world_size: Number of DDP processes.
        global_rank: This process's global rank.
    """

    round_idx: int
    seed: int
    base_seed: int
    clients: tuple[int, ...]
    client_weights: dict[int, float]
    rank_clients: tuple[int, ...]
    local_steps: int
    steps_this_rank: int
    world_size: int = 1
    global_rank: int = 0

    @property
    def busy_steps(self) -> int:
        """Batches of this rank that train a client; the rest of ``steps_this_rank`` idle."""
        return min(len(self.rank_clients) * self.local_steps, self.steps_this_rank)

    def client_of_step(self, step: int) -> int | None:
        """The client this rank trains at batch ``step`` of the round (``None``: idle step)."""
        if not 0 <= step < self.busy_steps:
            return None
        return self.rank_clients[step // self.local_steps]


def padded_steps(clients_per_round: int, local_steps: int, world_size: int) -> int:
    """Batches every rank runs per round: the largest shard's (ceil(C / W) clients) steps."""
    return -(-clients_per_round // world_size) * local_steps


def build_round_plan(
    schedule,
    round_idx: int,
    base_seed: int,
    client_sizes: Sequence[float],
    max_steps: int | None = None,
    global_rank: int = 0,
    world_size: int = 1,
) -> RoundPlan:
    """The plan of round ``round_idx`` from a ``RoundSchedule`` (a pure function of its inputs).

    Rank ``r`` simulates ``schedule.clients(t)[r::W]`` one after another, ``local_steps``
    batches each; every rank runs the largest shard's number of batches (idle padding), cut
    to ``max_steps`` batches when Lightning truncates the epoch.

    Args:
        schedule: The datamodule's ``RoundSchedule`` (``clients(t)``, ``local_steps``).
        round_idx: Zero-based round.
        base_seed: The module's seed.
        client_sizes: Aggregation weight of every client of the federation, by client id.
        max_steps: Batches Lightning lets this round run (``None``: no truncation).
        global_rank: This process's rank.
        world_size: Number of processes.
    """
    everyone = list(schedule.clients(round_idx))
    local_steps = int(schedule.local_steps)
    steps = padded_steps(len(everyone), local_steps, world_size)
    if max_steps is not None:
        steps = max(min(steps, int(max_steps)), 0)
    started = -(-steps // local_steps)  # clients per rank that run at least one step
    shards = [everyone[r::world_size][:started] for r in range(world_size)]
    clients = tuple(sorted(c for shard in shards for c in shard))
    return RoundPlan(
        round_idx=round_idx,
        seed=round_seed(base_seed, round_idx),
        base_seed=base_seed,
        clients=clients,
        client_weights={c: float(client_sizes[c]) for c in clients},
        rank_clients=tuple(shards[global_rank]),
        local_steps=local_steps,
        steps_this_rank=steps,
        world_size=world_size,
        global_rank=global_rank,
    )
