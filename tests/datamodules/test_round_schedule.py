"""Round schedule and batch sampler: reproducibility, DDP sharding, set_epoch."""

from __future__ import annotations

import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from lit_airlora.datamodules import RoundBatchSampler, RoundSchedule
from lit_airlora.datamodules.blocks import RankShard


def test_same_seed_and_round_give_same_clients_and_batches():
    a, b = RoundSchedule(20, 5, 3, seed=7), RoundSchedule(20, 5, 3, seed=7)
    for round_idx in range(4):
        assert a.clients(round_idx) == b.clients(round_idx)
        assert a.client_batches(round_idx, 2, 50, 4) == b.client_batches(round_idx, 2, 50, 4)
    clients = a.clients(0)
    assert clients == sorted(clients) and len(set(clients)) == 5
    assert all(0 <= c < 20 for c in clients)


def test_rounds_seeds_and_clients_differ():
    schedule = RoundSchedule(20, 5, 3, seed=7)
    assert len({tuple(schedule.clients(t)) for t in range(10)}) > 5
    assert schedule.clients(0) != RoundSchedule(20, 5, 3, seed=8).clients(0)
    assert schedule.client_batches(0, 1, 50, 4) != schedule.client_batches(1, 1, 50, 4)
    assert schedule.client_batches(0, 1, 50, 4) != schedule.client_batches(0, 2, 50, 4)


def test_batches_without_replacement_inside_a_round():
    batches = RoundSchedule(4, 2, local_steps=3, seed=0).client_batches(0, 1, 20, 4)
    flat = [i for batch in batches for i in batch]
    assert [len(b) for b in batches] == [4, 4, 4]
    assert len(set(flat)) == 12 and all(0 <= i < 20 for i in flat)


def test_small_clients_cycle_through_their_blocks():
    batches = RoundSchedule(4, 2, local_steps=3, seed=0).client_batches(0, 1, 5, 4)
    flat = [i for batch in batches for i in batch]
    assert len(flat) == 12 and set(flat) == set(range(5))
    assert sorted(flat[:5]) == list(range(5))  # every block once before any repeats


def test_ddp_ranks_are_disjoint_and_cover_the_round():
    schedule = RoundSchedule(30, 7, 2, seed=3)
    for round_idx in range(5):
        shards = [schedule.rank_clients(round_idx, r, 3) for r in range(3)]
        flat = [c for shard in shards for c in shard]
        assert len(flat) == len(set(flat))
        assert sorted(flat) == schedule.clients(round_idx)


def test_sampler_follows_set_epoch_through_lightning():
    schedule = RoundSchedule(6, 3, local_steps=2, seed=1)
    sizes = [10, 20, 30, 40, 50, 60]
    offsets = [0, 10, 30, 60, 100, 150]
    sampler = RoundBatchSampler(schedule, sizes, batch_size=4)
    loader = DataLoader(range(210), batch_sampler=sampler)
    _set_sampler_epoch(loader, 5)  # what Lightning's fit loop calls each epoch
    assert sampler.round_idx == 5
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6
    expected = [
        [offsets[c] + i for i in batch]
        for c in schedule.clients(5)
        for batch in schedule.client_batches(5, c, sizes[c], 4)
    ]
    assert batches == expected
    assert [b.tolist() for b in loader] == expected


def test_sampler_shards_clients_by_rank():
    schedule = RoundSchedule(6, 4, local_steps=1, seed=1)
    sizes = [8] * 6
    samplers = [RoundBatchSampler(schedule, sizes, 2, rank=r, world_size=2) for r in range(2)]
    for s in samplers:
        s.set_epoch(3)
    blocks = [{i // 8 for batch in s for i in batch} for s in samplers]
    assert blocks[0].isdisjoint(blocks[1])
    assert sorted(blocks[0] | blocks[1]) == schedule.clients(3)
    assert [len(s) for s in samplers] == [2, 2]


def test_uneven_shards_pad_with_idle_batches():
    schedule = RoundSchedule(6, 5, local_steps=2, seed=1)
    samplers = [RoundBatchSampler(schedule, [8] * 6, 2, rank=r, world_size=3) for r in range(3)]
    batches = [list(s) for s in samplers]
    # 5 clients on 3 ranks: 2, 2 and 1 clients; every rank runs 2 x 2 batches.
    assert [len(b) for b in batches] == [len(s) for s in samplers] == [4, 4, 4]
    assert batches[2][2:] == [[0], [0]]
    trained = {
        i // 8
        for b, s in zip(batches, samplers, strict=True)
        for batch in b[: 2 * len(s.clients())]
        for i in batch
    }
    assert sorted(trained) == schedule.clients(0)


def test_rank_shards_cover_the_set_once_and_pad_with_ignored_samples():
    data = [{"labels": torch.tensor([i, i])} for i in range(5)]
    shards = [RankShard(data, r, 2) for r in range(2)]
    assert [len(s) for s in shards] == [3, 3]
    seen = sorted(int(s[i]["labels"][0]) for s in shards for i in range(3))
    assert seen == [-100, 0, 1, 2, 3, 4]


def test_schedule_errors():
    with pytest.raises(
        ValueError, match=r"`clients_per_round` \(5\) must be in \[1, `num_clients` \(4\)\]"
    ):
        RoundSchedule(4, 5, 1, 0)
    with pytest.raises(ValueError, match=r"`local_steps` \(0\)"):
        RoundSchedule(4, 2, 0, 0)
