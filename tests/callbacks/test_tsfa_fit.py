"""SOFT + TSFA end to end on the tiny federated module (2 rounds)."""

import pytest

from lit_airlora.callbacks.soft import SOFT
from lit_airlora.callbacks.tsfa import TSFA
from lit_airlora.compression.soft import soft_payload_bits
from tests.helpers import tiny_fit

# Tiny Llama: q_proj 64 -> 64 and v_proj 64 -> 32 in 2 layers, max rank 4.
DIMS = [(64, 64), (64, 32)] * 2


def test_soft_and_tsfa_fit_two_rounds(tmp_path, tiny_llama_dir, tokenizer):
    soft = SOFT(rho=0.0, lambda_orth=1e-2)
    # Sending everything (rho = 0) takes ~30 ms per round: round 0 does (its queue is empty),
    # then the queue of the 20 ms budget outweighs V E_sp (V is small against Q T, in s^2).
    tsfa = TSFA(0.02, bandwidth_hz=1e6, penalty_weight=1e-5, structural_rank=3, seed=1)
    trainer, module = tiny_fit(
        tmp_path, tiny_llama_dir, tokenizer, max_epochs=2, callbacks=[soft, tsfa]
    )
    metrics = {k: float(v) for k, v in trainer.logged_metrics.items()}
    assert set(module.ranks.values()) == {3}
    assert metrics["tsfa/rho"] == pytest.approx(soft.rho) and metrics["tsfa/rank"] == 3
    assert soft.rho > 0
    assert metrics["comm/uplink_bits_per_client"] == soft_payload_bits(soft.rho, 3, DIMS)
    assert metrics["soft/kept_fraction"] < 1.0
    assert metrics["soft/sparsification_error"] >= 0 and metrics["soft/factor_covariance"] > 0
    assert metrics["tsfa/avg_latency_s"] == pytest.approx(tsfa.latency_sum_s / 2)
    assert metrics["round/clients"] == 3 and tsfa.num_rounds == 2
    assert module.perplexity_history[-1] < module.perplexity_history[0]


def test_tsfa_shares_drive_the_digital_uplink_end_to_end(tmp_path, tiny_llama_dir, tokenizer):
    from lit_airlora.callbacks.digital_link import DigitalUplink
    from lit_airlora.channel.abstraction import AbstractionLink
    from lit_airlora.channel.large_scale import FixedSNR
    from lit_airlora.federated.stages import StageCallback

    class Received(StageCallback):  # observer: the shares on the uploads the server received
        def __init__(self):
            self.shares = {}

        def on_upload_aggregate(self, trainer, pl_module, ctx):
            self.shares = {u.client_id: u.meta["bandwidth_share"] for u in ctx.uploads}

    soft, received = SOFT(rho=0.0), Received()
    tsfa = TSFA(0.05, bandwidth_hz=1e6, structural_rank=3, seed=1)
    link = AbstractionLink(bandwidth_hz=1e6, subcarrier_spacing_hz=15e3)
    uplink = DigitalUplink(link, large_scale=FixedSNR(20.0), multiple_access="fdma")
    trainer, _ = tiny_fit(
        tmp_path, tiny_llama_dir, tokenizer, max_epochs=1,
        callbacks=[soft, tsfa, uplink, received],
    )  # fmt: skip
    metrics = {k: float(v) for k, v in trainer.logged_metrics.items()}
    assert metrics["comm/airtime_s"] > 0 and metrics["channel/outage_clients"] == 0
    assert received.shares and received.shares == tsfa.bandwidth_shares


def test_tsfa_checks_round_zero_from_the_plan_published_at_setup(
    tmp_path, tiny_llama_dir, tokenizer
):
    """Without `num_clients`, TSFA's fit-start check reads round 0's plan (3 clients), which
    the module publishes at setup: `min_clients` 4 is refused before any training step."""

    class Spy(TSFA):
        def on_fit_start(self, trainer, pl_module):
            self.plan_at_fit_start = pl_module.round_plan
            super().on_fit_start(trainer, pl_module)

    tsfa = Spy(1.0, structural_rank=3, min_clients=4)
    with pytest.raises(
        ValueError, match=r"`min_clients` \(4\) exceeds the clients per round \(3\)"
    ):
        tiny_fit(tmp_path, tiny_llama_dir, tokenizer, max_epochs=1, callbacks=[SOFT(), tsfa])
    plan = tsfa.plan_at_fit_start
    assert plan.round_idx == 0 and len(plan.clients) == 3 and tsfa.num_rounds == 0
