"""Hand-built uploads, round contexts, fixed channels and a two-thread "DDP" reduce for tests."""

from __future__ import annotations

import threading

import torch

from lit_airlora.channel.fading import SmallScale
from lit_airlora.federated.aggregators import identity_reduce
from lit_airlora.federated.upload import RoundContext, Upload

MODULES = ("layers.0.q_proj", "layers.0.v_proj")


def make_template(max_rank: int = 4, dim: int = 12) -> dict[str, torch.Tensor]:
    template = {}
    for module in MODULES:
        template[f"{module}.lora_A"] = torch.zeros(max_rank, dim)
        template[f"{module}.lora_B"] = torch.zeros(dim, max_rank)
    return template


def make_uploads(ranks=(4, 2, 3, 1), seed: int = 0, max_rank: int = 4) -> list[Upload]:
    """One upload per client (ids 0..K-1), entries beyond the client's rank zero."""
    g = torch.Generator().manual_seed(seed)
    uploads = []
    for k, rank in enumerate(ranks):
        tensors = {}
        for name, zero in make_template(max_rank).items():
            x = torch.randn(zero.shape, generator=g) * 0.01 + 0.002 * (k + 1)
            mask = torch.zeros_like(zero, dtype=torch.bool)
            if name.endswith("lora_A"):
                mask[:rank] = True
            else:
                mask[:, :rank] = True
            tensors[name] = x * mask
        ranks_k = dict.fromkeys(MODULES, rank)
        uploads.append(Upload(client_id=k, tensors=tensors, ranks=ranks_k, weight=10.0 + 3 * k))
    return uploads


def make_ctx(aggregator, uploads, reduce=identity_reduce, all_uploads=None, seed: int = 7):
    """A round context; ``all_uploads`` (every rank's) sets the ideal aggregate and the round."""
    everyone = all_uploads if all_uploads is not None else uploads
    template = make_template(everyone[0].tensors["layers.0.q_proj.lora_A"].shape[0])
    return RoundContext(
        round_idx=0,
        uploads=list(uploads),
        global_adapter=template,
        aggregator=aggregator,
        ideal_aggregate=aggregator.aggregate(everyone, template),
        reduce=reduce,
        generator_seed=seed,
        round_clients=sorted(u.client_id for u in everyone),
        client_weights={u.client_id: u.weight for u in everyone},
    )


class FixedFading(SmallScale):
    """Single-antenna flat channels set per client id (to place deep fades where a test wants)."""

    def __init__(self, gains: dict[int, complex]) -> None:
        self.gains = gains

    def draw_clients(self, client_ids, keys, device="cpu"):
        values = [self.gains[k] for k in client_ids]
        return torch.tensor(values, dtype=torch.complex64, device=device).view(-1, 1, 1, 1)


class ThreadReduce:
    """Sum of dicts of tensors over ``num_ranks`` threads, like an all-reduce over DDP ranks."""

    def __init__(self, num_ranks: int) -> None:
        self.num_ranks = num_ranks
        self.parts: dict[int, dict] = {}
        self.barrier = threading.Barrier(num_ranks)

    def for_rank(self, rank: int):
        def reduce(tensors: dict) -> dict:
            self.parts[rank] = tensors
            self.barrier.wait()
            out = {k: sum(self.parts[r][k] for r in range(self.num_ranks)) for k in tensors}
            self.barrier.wait()  # every rank has read before anyone writes its next part
            return out

        return reduce


def run_ranks(num_ranks: int, work) -> list:
    """Run ``work(rank, reduce)`` on ``num_ranks`` threads; their results in rank order."""
    reducer, results, errors = ThreadReduce(num_ranks), [None] * num_ranks, []

    def target(rank: int) -> None:
        try:
            results[rank] = work(rank, reducer.for_rank(rank))
        except BaseException as error:  # surface thread failures in the test
            errors.append(error)
            reducer.barrier.abort()

    threads = [threading.Thread(target=target, args=(r,)) for r in range(num_ranks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results
