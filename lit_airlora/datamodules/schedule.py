"""The round schedule: which clients take part in a round, and which blocks they train on."""

from __future__ import annotations

import torch

from lit_airlora.seeding import make_generator

#: Keys separating the schedule's streams (client sampling, local batches, the partition).
SAMPLING_STREAM, BATCHES_STREAM, PARTITION_STREAM = 0x5A1, 0xBA7, 0x9A7


class RoundSchedule:
    """Client sampling and local batches, a pure function of ``(seed, round)``.

    Round ``t`` samples ``clients_per_round`` distinct clients uniformly from a generator
    seeded by ``(seed, t)``, as in FedAvg's client sampling (McMahan et al., 2017). Client
    ``k`` then trains on ``local_steps`` batches of block indices drawn from a generator
    seeded by ``(seed, t, k)``: a random permutation of its blocks, so no block repeats
    within a round when it holds ``local_steps * batch_size`` blocks or more (otherwise
    permutations are chained), and blocks are drawn afresh each round. Nothing needs saving
    in a checkpoint: a resumed run recomputes the same rounds. With DDP, rank ``r`` of ``W``
    simulates ``clients(t)[r::W]``.

    Args:
        num_clients: Clients in the federation.
        clients_per_round: Clients sampled per round (without replacement).
        local_steps: Local batches per client per round.
        seed: Base seed.
    """

    def __init__(self, num_clients: int, clients_per_round: int, local_steps: int, seed: int):
        if not 1 <= clients_per_round <= num_clients:
            raise ValueError(
                f"`clients_per_round` ({clients_per_round}) must be in [1, `num_clients` "
                f"({num_clients})]."
            )
        if local_steps < 1:
            raise ValueError(f"`local_steps` ({local_steps}) must be >= 1.")
        self.num_clients = num_clients
        self.clients_per_round = clients_per_round
        self.local_steps = local_steps
        self.seed = seed

    def clients(self, round_idx: int) -> list[int]:
        """Sorted ids of the clients taking part in round ``round_idx``."""
        generator = make_generator(self.seed, SAMPLING_STREAM, round_idx)
        order = torch.randperm(self.num_clients, generator=generator)
        return sorted(order[: self.clients_per_round].tolist())

    def rank_clients(self, round_idx: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """The round's clients simulated by DDP rank ``rank`` of ``world_size``."""
        return self.clients(round_idx)[rank::world_size]

    def client_batches(
        self, round_idx: int, client_id: int, num_blocks: int, batch_size: int
    ) -> list[list[int]]:
        """``local_steps`` batches of ``batch_size`` block indices in ``[0, num_blocks)``."""
        if num_blocks < 1:
            raise ValueError(f"Client {client_id} has no block to train on.")
        generator = make_generator(self.seed, BATCHES_STREAM, round_idx, client_id)
        needed = self.local_steps * batch_size
        draws = [
            torch.randperm(num_blocks, generator=generator) for _ in range(-(-needed // num_blocks))
        ]
        order = torch.cat(draws)[:needed].tolist()
        return [order[i : i + batch_size] for i in range(0, needed, batch_size)]
