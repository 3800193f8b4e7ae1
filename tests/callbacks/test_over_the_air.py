"""The over-the-air aggregation callback on hand-built rounds (the module's end-to-end is below)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch

from lit_airlora.callbacks.over_the_air import OverTheAirAggregation
from lit_airlora.channel.beamforming import MatchedFilterBeamformer
from lit_airlora.channel.fading import AWGN, OFDMTDL, FlatMIMO, RayleighBlock
from lit_airlora.channel.large_scale import FixedSNR, UniformSNR
from lit_airlora.federated.aggregators import FedIT, FFALoRA
from lit_airlora.federated.heterogeneous import HeteroFL
from tests.channel.aircomp_helpers import FixedFading, make_ctx, make_uploads, run_ranks

METRICS = {
    "channel/snr_db_mean", "channel/snr_db_min", "channel/snr_db_max", "channel/participating",
    "channel/truncated", "channel/all_truncated", "channel/eta", "channel/agg_mse",
    "channel/agg_nmse", "comm/channel_uses", "comm/airtime_s", "comm/energy_j",
    "comm/side_info_values",
}  # fmt: skip


def _callback(fading=None, **kwargs) -> OverTheAirAggregation:
    kwargs.setdefault("beamformer", MatchedFilterBeamformer())
    return OverTheAirAggregation(FixedSNR(15.0), fading or RayleighBlock(), **kwargs)


def _run(callback, aggregator, uploads=None):
    ctx = make_ctx(aggregator, uploads or make_uploads())
    callback.on_upload_transmit(None, None, ctx)
    return ctx


@pytest.mark.parametrize("aggregator", [FedIT(), HeteroFL(), FFALoRA()])
@pytest.mark.parametrize(
    ("fading", "num_streams"), [(RayleighBlock(), 1), (FlatMIMO(4, 2), 2)], ids=["siso", "mimo"]
)
def test_noiseless_channel_reproduces_the_ideal_aggregate(aggregator, fading, num_streams):
    callback = _callback(fading, num_streams=num_streams, receiver_noise=False,
                         truncation_threshold=0.0)  # fmt: skip
    ctx = _run(callback, aggregator)
    assert set(ctx.aggregate) == set(ctx.ideal_aggregate)
    for name, ideal in ctx.ideal_aggregate.items():
        torch.testing.assert_close(ctx.aggregate[name], ideal, rtol=1e-5, atol=1e-8)
    assert set(ctx.metrics) >= METRICS
    assert ctx.metrics["channel/agg_nmse"] < 1e-10


def test_noise_shows_in_the_error_and_shrinks_with_snr():
    nmse = []
    for snr_db in (0.0, 20.0, 40.0):
        callback = OverTheAirAggregation(FixedSNR(snr_db), AWGN())
        nmse.append(_run(callback, FedIT()).metrics["channel/agg_nmse"])
    assert nmse[0] > nmse[1] > nmse[2] > 0
    assert nmse[0] / nmse[1] == pytest.approx(100.0, rel=0.5)  # 20 dB less noise power


def test_deep_fade_client_sits_out_and_outputs_stay_finite():
    fading = FixedFading({0: 1.0, 1: 1e-20, 2: 0.0, 3: 0.8j})
    ctx = _run(_callback(fading, truncation_threshold=0.05), HeteroFL())
    assert ctx.metrics["channel/truncated"] == 2 and ctx.metrics["channel/participating"] == 2
    assert all(torch.isfinite(t).all() for t in ctx.aggregate.values())
    assert ctx.metrics["comm/side_info_values"] == 2 * 4 * 2  # (mean, std) x 4 tensors x 2


def test_non_finite_upload_gives_a_zero_update_not_nan():
    uploads = make_uploads()
    bad = dict(uploads[1].tensors)
    bad["layers.0.q_proj.lora_A"] = torch.full_like(bad["layers.0.q_proj.lora_A"], float("nan"))
    uploads[1] = uploads[1].replace(tensors=bad)
    ctx = _run(_callback(), FedIT(), uploads)
    assert all(torch.all(t == 0) for t in ctx.aggregate.values())
    assert ctx.metrics["channel/nonfinite"] == 1.0


def test_all_truncated_round_gives_a_zero_update_and_is_logged():
    callback = _callback(truncation_threshold=1e9)
    ctx = _run(callback, FedIT())
    assert all(torch.all(t == 0) for t in ctx.aggregate.values())
    assert ctx.metrics["channel/all_truncated"] == 1.0
    assert ctx.metrics["channel/participating"] == 0.0
    assert callback.history[-1]["channel/all_truncated"] == 1.0


def test_two_ddp_ranks_give_the_single_rank_result():
    uploads = make_uploads(ranks=(4, 2, 3, 1, 4))
    fading = OFDMTDL(num_subcarriers=4, num_rx=2, num_tx=2)
    single = _run(_callback(fading, num_streams=2), FedIT(), uploads).aggregate

    def rank_work(rank, reduce):
        mine = uploads[:2] if rank == 0 else uploads[2:]
        ctx = make_ctx(FedIT(), mine, reduce=reduce, all_uploads=uploads)
        _callback(fading, num_streams=2).on_upload_transmit(None, None, ctx)
        return ctx.aggregate

    for result in run_ranks(2, rank_work):
        for name, value in single.items():
            torch.testing.assert_close(result[name], value, rtol=1e-5, atol=1e-9)


def test_non_linear_aggregator_is_refused():
    class Stacking(FedIT):
        is_linear = False

    callback = _callback()
    with pytest.raises(ValueError, match="`aggregator` \\(Stacking\\) is not linear"):
        trainer = SimpleNamespace(callbacks=[callback])
        callback.setup(trainer, SimpleNamespace(aggregator=Stacking(), device="cpu"), "fit")
    with pytest.raises(ValueError, match="not linear"):
        _run(callback, Stacking())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_streams": 3, "fading": FlatMIMO(4, 2)}, ValueError, "`num_streams` \\(3\\)"),
        ({"num_streams": 2}, ValueError, "`num_streams` \\(2\\)"),
        ({"tx_power_w": 0.0}, ValueError, "`tx_power_w`"),
        ({"bandwidth_hz": -1.0}, ValueError, "`bandwidth_hz`"),
        ({"truncation_threshold": -0.1}, ValueError, "`truncation_threshold`"),
        ({"fading": "rayleigh"}, TypeError, "`fading`"),
        ({"beamformer": 3}, TypeError, "`beamformer`"),
    ],
)
def test_bad_arguments_fail_at_init(kwargs, error, match):
    fading = kwargs.pop("fading", RayleighBlock())
    with pytest.raises(error, match=match):
        OverTheAirAggregation(FixedSNR(10.0), fading, **kwargs)


def test_state_dict_round_trips_through_a_weights_only_checkpoint():
    callback = OverTheAirAggregation(UniformSNR(0.0, 10.0), RayleighBlock())
    _run(callback, FedIT())
    buffer = io.BytesIO()
    torch.save(callback.state_dict(), buffer)
    buffer.seek(0)
    restored = OverTheAirAggregation(UniformSNR(0.0, 10.0), RayleighBlock())
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.history == callback.history
    assert len(restored.history[0]["snr_db"]) == 4
    assert callback.state_key != OverTheAirAggregation(FixedSNR(1.0), AWGN(), seed=1).state_key


def test_fit_end_writes_the_figure_to_tensorboard(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    callback = _callback()
    for _ in range(2):
        _run(callback, FedIT())
    logger = TensorBoardLogger(tmp_path)
    trainer = SimpleNamespace(is_global_zero=True, loggers=[logger], global_step=5)
    callback.on_fit_end(trainer, None)
    logger.experiment.flush()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert "channel/aircomp" in events.Tags()["images"]


def _air(seed: int = 0) -> OverTheAirAggregation:
    return OverTheAirAggregation(
        UniformSNR(10.0, 20.0), OFDMTDL(num_subcarriers=8, num_rx=2, num_tx=2), num_streams=2,
        beamformer=MatchedFilterBeamformer(), seed=seed,
    )  # fmt: skip


def test_end_to_end_fit_over_the_air(tmp_path, tiny_llama_dir, tokenizer):
    from tests.helpers import tiny_fit

    callback = _air()
    trainer, module = tiny_fit(tmp_path, tiny_llama_dir, tokenizer, callbacks=[callback])
    metrics = trainer.logged_metrics
    assert 0 < float(metrics["channel/agg_nmse"]) < 1
    assert float(metrics["channel/participating"]) + float(metrics["channel/truncated"]) == 3
    assert [r["round"] for r in callback.history] == [0, 1]
    assert all(torch.isfinite(t).all() for t in module.global_adapter.values())


@pytest.mark.slow  # three tiny fits (~10 s each on a shared 2-core box)
def test_resume_over_the_air_matches_an_uninterrupted_run(tmp_path, tiny_llama_dir, tokenizer):
    from tests.helpers import tiny_fit

    _, full = tiny_fit(tmp_path / "full", tiny_llama_dir, tokenizer, callbacks=[_air()])
    trainer, _ = tiny_fit(tmp_path / "cut", tiny_llama_dir, tokenizer, 1, callbacks=[_air()])
    ckpt = trainer.checkpoint_callback.best_model_path
    resumed_cb = _air()
    _, resumed = tiny_fit(
        tmp_path / "cut", tiny_llama_dir, tokenizer, callbacks=[resumed_cb], ckpt_path=ckpt
    )
    for name, value in full.global_adapter.items():
        torch.testing.assert_close(resumed.global_adapter[name], value)
    assert [r["round"] for r in resumed_cb.history] == [0, 1]


def _payload_reals(aggregator) -> int:
    """Reals of the superposed payload: two per channel use of a one-antenna, one-carrier round."""
    callback = OverTheAirAggregation(FixedSNR(20.0), AWGN(), receiver_noise=False)
    return 2 * int(_run(callback, aggregator).metrics["comm/channel_uses"])


def test_energy_budget_makes_longer_payloads_noisier():
    reals = _payload_reals(FedIT())
    nmse, shifts = [], []
    for budget in (reals, reals // 10):  # one stream, one subcarrier: 2 N reals of energy
        callback = OverTheAirAggregation(FixedSNR(20.0), AWGN(), energy_budget_symbols=budget)
        metrics = _run(callback, FedIT()).metrics
        nmse.append(metrics["channel/agg_nmse"])
        shifts.append(metrics["channel/energy_shift_db"])
    assert shifts[0] == pytest.approx(10 * torch.log10(torch.tensor(2.0)).item(), abs=1e-3)
    assert shifts[0] - shifts[1] == pytest.approx(10.0, abs=0.05)
    # Same noise draw, ~10x less energy per value: that much more error (stated tolerance 1%).
    assert nmse[1] / nmse[0] == pytest.approx(10 ** ((shifts[0] - shifts[1]) / 10), rel=0.01)


def test_rank_policy_reads_back_the_snr_the_channel_drew_not_the_energy_shifted_one():
    """The channel callback and the policy's ChannelState exchange an SNR: they must agree.

    Under an energy budget the estimate sees the SNR shifted by the energy per value; the
    history must still hold the full-power SNR, which the MSE models scale by D / D_full
    themselves (counting the shift there as well would count it twice).
    """
    from lit_airlora.policy.channel_state import ChannelState

    budget = _payload_reals(FedIT()) // 4  # 2 N / D = 1/2: a -3.01 dB shift
    callback = OverTheAirAggregation(FixedSNR(10.0), AWGN(), energy_budget_symbols=budget)
    ctx = _run(callback, FedIT())
    assert ctx.metrics["channel/energy_shift_db"] == pytest.approx(-3.01, abs=0.01)
    assert callback.history[-1]["energy_shift_db"] == ctx.metrics["channel/energy_shift_db"]
    trainer = SimpleNamespace(callbacks=[callback], datamodule=None)
    snr_db = ChannelState(None, None, 0).snr_db(trainer, ctx.round_idx)
    assert snr_db.tolist() == [10.0] * len(ctx.round_clients)
    assert ctx.metrics["channel/snr_db_mean"] == 10.0


def test_truncated_clients_do_not_lengthen_the_energy_budget_payload():
    uploads = make_uploads()
    deep = max(uploads, key=lambda u: sum(u.ranks.values()))  # the longest upload sits out
    gains = {u.client_id: 1.0 for u in uploads} | {deep.client_id: 1e-3}
    shifts = []
    for sender_set in (uploads, [u for u in uploads if u is not deep]):
        callback = OverTheAirAggregation(
            FixedSNR(20.0), FixedFading(gains), energy_budget_symbols=1000,
            truncation_threshold=0.05, receiver_noise=False,
        )  # fmt: skip
        shifts.append(_run(callback, FedIT(), sender_set).metrics["channel/energy_shift_db"])
    assert shifts[0] == shifts[1]


def test_energy_budget_must_be_positive():
    with pytest.raises(ValueError, match="energy_budget_symbols"):
        OverTheAirAggregation(FixedSNR(20.0), AWGN(), energy_budget_symbols=0)


def test_the_stage_leaves_the_process_thread_count_alone(monkeypatch):
    from lit_airlora.channel.beamforming import ManifoldBeamformer

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    fading = FlatMIMO(4, 2)
    fading.setup("cpu")
    _run(_callback(fading, num_streams=2, beamformer=ManifoldBeamformer()), FedIT())
    assert calls == []
