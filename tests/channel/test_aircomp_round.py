"""The AirComp round steps: two "ranks" with a summing reduce give the one-rank result."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.callbacks.over_the_air import client_values, mean_sums
from lit_airlora.channel import aircomp_round as air
from lit_airlora.channel.beamforming import MatchedFilterBeamformer
from lit_airlora.channel.fading import FlatMIMO, RayleighBlock
from lit_airlora.channel.large_scale import UniformSNR
from lit_airlora.channel.normalise import module_names
from lit_airlora.federated.aggregators import FedIT
from lit_airlora.federated.heterogeneous import HeteroFL
from lit_airlora.seeding import make_generator
from tests.channel.aircomp_helpers import make_template, make_uploads


def _sum(parts: list[dict]) -> dict:
    return {k: sum(p[k] for p in parts) for k in parts[0]}


def _round(rank_uploads: list[list], aggregator, fading, num_streams: int) -> dict:
    """All steps, each rank's part computed separately and summed (one rank: a single part)."""
    everyone = [u for part in rank_uploads for u in part]
    template = make_template()
    names = sorted(template)
    modules = module_names(names)
    keys = (11, 3)
    channel = air.draw_channel(
        UniformSNR(5.0, 15.0), fading, [u.client_id for u in everyone],
        {u.client_id: u.weight for u in everyone}, 0.01, num_streams, keys, "cpu",
    )  # fmt: skip
    rank_clients = [[client_values(u, names) for u in part] for part in rank_uploads]
    side = _sum([air.side_information(part, channel, names, modules) for part in rank_clients])
    plan = air.make_plan(channel, num_streams, MatchedFilterBeamformer(), keys)
    payload = air.make_payload(side, plan.participating, names, modules, template)
    parts = []
    for uploads, clients in zip(rank_uploads, rank_clients, strict=True):
        means = air.side_means(plan, channel, clients, payload)
        part = mean_sums(uploads, means, aggregator, template)
        part.update(air.local_transmission(plan, channel, clients, payload))
        parts.append(part)
    reduced = _sum(parts)
    estimate = air.receive(plan, reduced, payload, make_generator(*keys, air.NOISE_STREAM))
    total = sum(u.weight for u in everyone)
    return aggregator.finalize(air.server_sums(reduced, estimate, total))


@pytest.mark.parametrize(
    ("aggregator", "fading", "num_streams"),
    [(FedIT(), RayleighBlock(), 1), (HeteroFL(), FlatMIMO(4, 2), 2)],
)
def test_two_ranks_equal_one_rank(aggregator, fading, num_streams):
    uploads = make_uploads(ranks=(4, 2, 3, 1, 4))
    one = _round([uploads], aggregator, fading, num_streams)
    two = _round([uploads[:2], uploads[2:]], aggregator, fading, num_streams)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-10, atol=1e-12)
