"""The round plan: shards, idle padding and truncation agree across ranks."""

import pytest

from lit_airlora.datamodules.schedule import RoundSchedule
from lit_airlora.federated.plan import build_round_plan
from lit_airlora.seeding import round_seed

SCHEDULE = RoundSchedule(num_clients=10, clients_per_round=5, local_steps=3, seed=4)
SIZES = [float(10 + k) for k in range(10)]


def _plans(world_size, max_steps=None, round_idx=2):
    return [
        build_round_plan(SCHEDULE, round_idx, 7, SIZES, max_steps, rank, world_size)
        for rank in range(world_size)
    ]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 6])
def test_ranks_share_the_round_and_run_the_same_number_of_steps(world_size):
    plans = _plans(world_size)
    assert {p.clients for p in plans} == {tuple(SCHEDULE.clients(2))}
    assert sorted(c for p in plans for c in p.rank_clients) == SCHEDULE.clients(2)
    # 5 clients over W ranks: the largest shard has ceil(5 / W) clients of 3 steps each.
    assert {p.steps_this_rank for p in plans} == {-(-5 // world_size) * 3}
    assert all(p.seed == round_seed(7, 2) for p in plans)
    assert plans[0].client_weights == {c: SIZES[c] for c in SCHEDULE.clients(2)}


def test_steps_map_to_clients_then_idle():
    plan = _plans(2)[1]  # 2 clients of 3 steps, padded to 9 steps
    assert [plan.client_of_step(s) for s in range(9)] == [plan.rank_clients[0]] * 3 + [
        plan.rank_clients[1]
    ] * 3 + [None] * 3


def test_truncation_drops_clients_that_never_start():
    plans = _plans(2, max_steps=4)  # each rank: 3 steps of its first client, 1 of its second
    assert all(p.steps_this_rank == 4 and len(p.rank_clients) == 2 for p in plans)
    plans = _plans(2, max_steps=2)
    everyone = SCHEDULE.clients(2)
    assert plans[0].clients == tuple(sorted(everyone[:2]))
    assert plans[0].rank_clients == (everyone[0],) and plans[1].rank_clients == (everyone[1],)
