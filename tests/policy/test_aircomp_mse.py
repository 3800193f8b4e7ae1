"""Aggregation-MSE models: SISO closed form, MIMO through the AirComp transceivers."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.channel.beamforming import ManifoldBeamformer, MatchedFilterBeamformer
from lit_airlora.channel.fading import AWGN, SmallScale
from lit_airlora.policy.aircomp_mse import MimoAirCompMSE, SisoAirCompMSE
from lit_airlora.policy.backtracking import BacktrackingRankSelection
from tests.policy.policy_helpers import observation


class IidMIMO(SmallScale):
    """i.i.d. Rayleigh MIMO in plain torch (FlatMIMO without importing Sionna in a unit test)."""

    def __init__(self, num_rx: int, num_tx: int):
        self.num_rx, self.num_tx = num_rx, num_tx

    def draw(self, num_clients, generator, device="cpu"):
        shape = (num_clients, self.num_rx, self.num_tx, 1)
        return torch.randn(shape, dtype=torch.complex64, generator=generator, device=device)


def test_single_antenna_awgn_matches_the_siso_closed_form():
    obs = observation({"a": (4, 4)}, [10.0, 0.0, 20.0])
    mimo = MimoAirCompMSE(AWGN(), ofdm_symbols=7)
    assert mimo.unit_mse(obs, obs.ranks) == pytest.approx(
        SisoAirCompMSE(7).unit_mse(obs, obs.ranks)
    )
    assert mimo.full_values() == SisoAirCompMSE(7).full_values()


def test_mimo_manifold_beamformer_no_worse_than_matched_filter_and_cached():
    obs = observation({"a": (4, 4)}, [0.0, 5.0, 10.0], round_idx=3)
    fading = IidMIMO(num_rx=4, num_tx=2)
    matched = MimoAirCompMSE(fading, 10, num_streams=2, beamformer=MatchedFilterBeamformer())
    manifold = MimoAirCompMSE(fading, 10, num_streams=2, beamformer=ManifoldBeamformer(30))
    mse_matched = matched.unit_mse(obs, obs.ranks)
    mse_manifold = manifold.unit_mse(obs, obs.ranks)
    assert 0 < mse_manifold <= mse_matched * (1 + 1e-9)
    assert manifold.unit_mse(obs, {"a": 1}) == mse_manifold  # rank-independent: cached
    assert manifold.full_values() == 2 * 2 * 1 * 10


def test_backtracking_with_mimo_model():
    obs = observation({f"m{i}": (32, 32) for i in range(2)}, [5.0, 8.0], max_rank=8)
    obs.update_spectrum = {n: 0.8 ** torch.arange(8.0) for n in obs.shapes}
    model = MimoAirCompMSE(AWGN(), ofdm_symbols=20000)
    ranks = BacktrackingRankSelection(model, lr=1.0).act(obs)
    assert all(1 <= r <= 8 for r in ranks.values())


def test_mimo_rejects_too_many_streams():
    with pytest.raises(ValueError, match=r"`num_streams` \(3\)"):
        MimoAirCompMSE(IidMIMO(num_rx=4, num_tx=2), 10, num_streams=3)


def test_policy_plans_on_the_round_channel_the_over_the_air_callback_draws():
    """The MSE model and the channel callback exchange a channel (same round and callback
    seeds): the model's full-power MSE equals the callback's theory, and under an energy budget
    the callback's is that times the energy shift (the beamformer is scale-invariant)."""
    from lit_airlora.callbacks.over_the_air import OverTheAirAggregation
    from lit_airlora.channel.large_scale import UniformSNR
    from lit_airlora.federated.aggregators import FedIT
    from tests.channel.aircomp_helpers import make_ctx, make_uploads

    fading, snr = IidMIMO(num_rx=4, num_tx=2), UniformSNR(0.0, 15.0)
    beamformer = ManifoldBeamformer(num_steps=20)
    uploads = make_uploads()
    ctx = make_ctx(FedIT(), uploads, seed=11)
    obs = observation({"a": (4, 4)}, [0.0] * len(uploads))
    obs.round_seed, obs.client_weights = 11, dict(ctx.client_weights)
    model = MimoAirCompMSE(
        fading, 10, num_streams=2, beamformer=beamformer, large_scale=snr,
        truncation_threshold=0.05, channel_seed=3,
    )  # fmt: skip
    predicted = model.unit_mse(obs, obs.ranks)
    for budget in (None, 10):
        callback = OverTheAirAggregation(
            snr, fading, num_streams=2, beamformer=beamformer, truncation_threshold=0.05,
            seed=3, energy_budget_symbols=budget,
        )  # fmt: skip
        ctx = make_ctx(FedIT(), uploads, seed=11)
        callback.on_upload_transmit(None, None, ctx)
        shift = ctx.metrics.get("channel/energy_shift_db", 0.0)
        theory = ctx.metrics["channel/mse_normalised_theory"]
        assert theory == pytest.approx(predicted * 10 ** (-shift / 10), rel=1e-9)
    assert shift < -3  # the budget really shifted the SNR
    with pytest.raises(ValueError, match="needs `large_scale`"):
        MimoAirCompMSE(fading, 10, channel_seed=3)


def _big_uploads(num_clients: int = 4, dim: int = 256, rank: int = 4) -> list:
    """Full-rank uploads of 4 x 1024 values per client (tight statistics of the noise)."""
    from lit_airlora.federated.upload import Upload
    from tests.channel.aircomp_helpers import MODULES

    g = torch.Generator().manual_seed(5)
    uploads = []
    for k in range(num_clients):
        tensors = {}
        for module in MODULES:
            tensors[f"{module}.lora_A"] = torch.randn(rank, dim, generator=g) * (0.01 + 0.005 * k)
            tensors[f"{module}.lora_B"] = torch.randn(dim, rank, generator=g) * 0.02 + 0.001 * k
        ranks = dict.fromkeys(MODULES, rank)
        uploads.append(Upload(client_id=k, tensors=tensors, ranks=ranks, weight=10.0 + 3 * k))
    return uploads


def test_siso_model_predicts_the_measured_error_of_the_callback_on_the_round_fading():
    """The SISO MSE model and the over-the-air callback exchange a number (the full-power error
    variance per real on the round's Rayleigh channel, truncation included): the model equals
    the callback's theory (rel 1e-9) and the error the callback really makes against the mean
    of the clients it let transmit, in units of the common scale, within 10 % (4096 reals per
    round: relative standard deviation sqrt(2 / 4096) = 2.2 %, three rounds)."""
    from lit_airlora.callbacks.over_the_air import OverTheAirAggregation
    from lit_airlora.channel.fading import RayleighBlock
    from lit_airlora.channel.large_scale import UniformSNR
    from lit_airlora.federated.aggregators import FedIT, identity_reduce
    from lit_airlora.federated.upload import RoundContext

    snr, fading, uploads = UniformSNR(0.0, 15.0), RayleighBlock(), _big_uploads()
    model = SisoAirCompMSE(
        channel_uses=100, fading=fading, large_scale=snr, truncation_threshold=0.3, channel_seed=3
    )
    flat = SisoAirCompMSE(channel_uses=100, large_scale=snr, channel_seed=3)  # same SNRs, AWGN
    truncated, flat_misses = 0, []
    for round_seed in (11, 12, 13):
        template = {n: torch.zeros_like(t) for n, t in uploads[0].tensors.items()}
        ctx = RoundContext(
            round_idx=0,
            uploads=list(uploads),
            global_adapter=template,
            aggregator=FedIT(),
            ideal_aggregate=FedIT().aggregate(uploads, template),
            reduce=identity_reduce,
            generator_seed=round_seed,
            round_clients=[u.client_id for u in uploads],
            client_weights={u.client_id: u.weight for u in uploads},
        )
        obs = observation({"m0": (256, 256)}, [0.0] * len(uploads))
        obs.round_seed, obs.client_weights = round_seed, dict(ctx.client_weights)
        predicted = model.unit_mse(obs, obs.ranks)
        callback = OverTheAirAggregation(snr, fading, truncation_threshold=0.3, seed=3)
        callback.on_upload_transmit(None, None, ctx)
        assert ctx.metrics["channel/mse_normalised_theory"] == pytest.approx(predicted, rel=1e-9)
        participating = callback.history[-1]["participating"]
        sent = [u for u, p in zip(uploads, participating, strict=True) if p]
        truncated += len(uploads) - len(sent)
        ideal = FedIT().aggregate(sent, ctx.global_adapter)
        gain = sum(u.weight for u in uploads) / sum(u.weight for u in sent)
        error = sum(float((ctx.aggregate[n] - t).pow(2).sum()) for n, t in ideal.items())
        expected = sum(
            t.numel() * max(float(u.tensors[n].std(unbiased=False)) for u in sent) ** 2
            for n, t in ideal.items()
        )
        measured = error / expected / gain**2
        assert measured == pytest.approx(predicted, rel=0.1)
        flat_misses.append(abs(measured / flat.unit_mse(obs, obs.ranks) - 1))
    assert truncated >= 1  # the rounds exercised truncation
    assert max(flat_misses) > 0.25, flat_misses  # a model without the fading would miss
    model_without_fading = SisoAirCompMSE(100)
    obs = observation({"m0": (256, 256)}, [0.0, 10.0])
    assert model_without_fading.unit_mse(obs, obs.ranks) == pytest.approx(1.0)


def test_siso_model_refuses_multi_antenna_fading_and_other_types():
    with pytest.raises(ValueError, match=r"`fading` \(IidMIMO\) has 4 x 2 antennas"):
        SisoAirCompMSE(10, fading=IidMIMO(num_rx=4, num_tx=2))
    with pytest.raises(TypeError, match=r"`fading` \(str\) must be a SmallScale"):
        SisoAirCompMSE(10, fading="rayleigh")
    with pytest.raises(ValueError, match="needs `large_scale`"):
        SisoAirCompMSE(10, channel_seed=3)
