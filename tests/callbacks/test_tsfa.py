"""The TSFA controller: offline rank, per-round rho and bandwidth, errors, state."""

from types import SimpleNamespace

import pytest

from lit_airlora.callbacks.soft import SOFT
from lit_airlora.callbacks.tsfa import TSFA
from lit_airlora.channel.fading import AWGN
from lit_airlora.channel.large_scale import FixedSNR
from lit_airlora.control.structural_rank import RankBound
from lit_airlora.lora.layers import adapter_tensors, find_lora_layers
from tests.callbacks.soft_helpers import peft_mlp, round_context

# peft_mlp: Linear(16 -> 24) and Linear(24 -> 8), max rank 4.
DIMS = [(16, 24), (24, 8)]


class FakeFederatedModule:
    """What TSFA reads from the module: LoRA layers, the global adapter and ``set_ranks``."""

    def __init__(self):
        self.lora_layers = find_lora_layers(peft_mlp(rank=4))
        self.global_adapter = adapter_tensors(self.lora_layers)
        self.set_ranks_calls = []

    def set_ranks(self, ranks, truncate="importance"):
        self.set_ranks_calls.append((dict(ranks), truncate))


def fitted(**kwargs):
    """A TSFA (and its SOFT) set up on the fake module, ready for rounds."""
    options = {"latency_budget_s": 3e-3, "bandwidth_hz": 1e6, "num_clients": 4}
    options.update(kwargs)
    soft, tsfa = SOFT(), TSFA(**options)
    trainer = SimpleNamespace(callbacks=[soft, tsfa], datamodule=None)
    module = FakeFederatedModule()
    tsfa.setup(trainer, module, "fit")
    tsfa.on_fit_start(trainer, module)
    return tsfa, soft, module, trainer


def test_offline_stage_sets_the_structural_rank():
    tsfa, _, module, _ = fitted(rank_bound=RankBound(approx_coeff=1.0, payload_coeff=0.2))
    assert tsfa.rank == 2  # argmin of 1/r + 0.21 r over 1..4
    ranks, truncate = module.set_ranks_calls[-1]
    assert set(ranks.values()) == {2} and len(ranks) == 2 and truncate == "importance"
    assert fitted(structural_rank=3)[0].rank == 3
    with pytest.raises(ValueError, match=r"`structural_rank` \(8\) must be <= .*max_rank \(4\)"):
        fitted(structural_rank=8)


def test_infeasible_budget_names_the_minimum():
    tsfa, *_ = fitted(structural_rank=4)
    minimum_s = tsfa.minimum_budget_s(list(range(4)))
    # keep ceil(0.1 * 4) = 1 component: 32 (16 + 24 + 24 + 8) + 2 * 4 mask bits
    assert tsfa.payload_bits(0.9) == 32 * (16 + 24 + 24 + 8) + 8
    with pytest.raises(ValueError, match=rf"minimum feasible round latency {minimum_s:.6g} s"):
        fitted(structural_rank=4, latency_budget_s=0.99 * minimum_s)
    fitted(structural_rank=4, latency_budget_s=1.01 * minimum_s)  # feasible: no error


def test_each_round_sets_soft_rho_and_logs_the_allocation():
    tsfa, soft, module, trainer = fitted(structural_rank=4, latency_budget_s=2e-3)
    latencies = []
    for round_idx in range(6):
        tsfa.on_round_start(trainer, module, round_idx)
        ctx = round_context(num_clients=4)
        tsfa.on_upload_encode(trainer, module, ctx)
        assert soft.rho == ctx.metrics["tsfa/rho"] and soft.rho in tsfa.rho_grid
        assert sum(tsfa.bandwidth_shares.values()) <= 1 + 1e-12
        latencies.append(ctx.metrics["tsfa/round_latency_s"])
    assert ctx.metrics["tsfa/avg_latency_s"] == pytest.approx(sum(latencies) / 6)
    assert 0 < ctx.metrics["tsfa/bandwidth_share_min"] <= 0.25
    assert {"tsfa/queue", "tsfa/error_model", "tsfa/rank", "tsfa/scheduled_clients"} <= set(
        ctx.metrics
    )


def test_state_round_trip_resumes_the_same_decisions():
    first, soft, module, trainer = fitted(structural_rank=4, latency_budget_s=2e-3)
    for round_idx in range(3):
        first.on_round_start(trainer, module, round_idx)
    state = first.state_dict()
    assert all(isinstance(v, (int, float)) for v in state.values())
    second, soft2, module2, trainer2 = fitted(structural_rank=4, latency_budget_s=2e-3)
    second.load_state_dict(state)
    first.on_round_start(trainer, module, 3)
    second.on_round_start(trainer2, module2, 3)
    assert second.state_dict() == first.state_dict() and soft2.rho == soft.rho


def test_scheduling_drops_clients_in_deep_fades_and_their_uploads():
    snr_db = [-10.0, 20.0, 20.0, 20.0]  # client 0 is far away; no fading
    options = {"structural_rank": 4, "large_scale": FixedSNR(snr_db), "small_scale": AWGN()}
    options["rho_grid"] = [0.5, 0.9]
    tsfa, _, module, trainer = fitted(latency_budget_s=2e-3, schedule_clients=True, **options)
    tsfa.on_round_start(trainer, module, 0)
    assert tsfa.dropped_clients == [0] and set(tsfa.bandwidth_shares) == {1, 2, 3}
    ctx = round_context(num_clients=4)
    tsfa.on_upload_encode(trainer, module, ctx)
    assert [u.client_id for u in ctx.uploads] == [1, 2, 3]
    assert ctx.metrics["tsfa/scheduled_clients"] == 3


def test_configuration_errors_are_clear():
    with pytest.raises(ValueError, match="TSFA controls exactly one SOFT callback, found 0"):
        TSFA(1.0, num_clients=2).setup(SimpleNamespace(callbacks=[]), FakeFederatedModule(), "fit")
    with pytest.raises(TypeError, match=r"TSFA needs `object.set_ranks\("):
        TSFA(1.0, num_clients=2).setup(SimpleNamespace(callbacks=[SOFT()]), object(), "fit")
    with pytest.raises(ValueError, match=r"`rho_grid` \(\[0.5, 1.0\]\) holds 1.0: every ratio"):
        TSFA(1.0, rho_grid=[0.5, 1.0])
    with pytest.raises(ValueError, match="`latency_budget_s`"):
        TSFA(0.0)
    with pytest.raises(ValueError, match="TSFA needs `num_clients`"):
        fitted(num_clients=None)
    with pytest.raises(
        ValueError, match=r"`min_clients` \(5\) exceeds the clients per round \(4\)"
    ):
        fitted(min_clients=5)


def test_digital_uplink_sends_each_client_on_the_share_tsfa_decided():
    """TSFA and the digital uplink exchange a bandwidth share: the link uses exactly TSFA's,
    with floor(share N) of its N PRBs, and a smaller share costs longer airtime."""
    import torch

    from lit_airlora.callbacks.digital_link import DigitalUplink
    from lit_airlora.channel.abstraction import AbstractionLink

    link = AbstractionLink(bandwidth_hz=1e6, subcarrier_spacing_hz=15e3)  # 5 PRBs
    uplink = DigitalUplink(link, large_scale=FixedSNR(15.0))
    tsfa, _, module, trainer = fitted(structural_rank=4, latency_budget_s=2e-3)
    tsfa.on_round_start(trainer, module, 0)
    ctx = round_context(num_clients=4)
    tsfa.on_upload_encode(trainer, module, ctx)
    uplink.on_upload_transmit(trainer, SimpleNamespace(device=torch.device("cpu")), ctx)
    assert ctx.uploads and len(ctx.uploads) == len(tsfa.bandwidth_shares)
    for upload in ctx.uploads:
        assert upload.meta["bandwidth_share"] == tsfa.bandwidth_shares[upload.client_id]
    report = link.transmit(
        [20_000, 20_000], torch.tensor([15.0, 15.0]),
        torch.ones(2, 1, 1, 1, dtype=torch.complex64), torch.Generator().manual_seed(0),
        bandwidth_shares=torch.tensor([0.2, 0.8], dtype=torch.float64),
    )  # fmt: skip
    assert report.extras["num_prbs"].tolist() == [1, 4]
    assert report.extras["bandwidth_share"].tolist() == [0.2, 0.8]
    assert float(report.airtime_s[0]) > 1.5 * float(report.airtime_s[1])
    with pytest.raises(ValueError, match=r"sum to 1\.2"):
        link.transmit(
            [8, 8], torch.zeros(2), torch.ones(2, 1, 1, 1, dtype=torch.complex64),
            torch.Generator(), bandwidth_shares=torch.tensor([0.6, 0.6]),
        )  # fmt: skip
