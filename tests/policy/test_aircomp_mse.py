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
