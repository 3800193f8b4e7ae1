"""Channel state for observations: channel callbacks first, then a seeded large-scale model."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from lit_airlora.channel.large_scale import FixedSNR, UniformSNR
from lit_airlora.policy.adapter_state import factor_update_power, named_scalar
from lit_airlora.policy.channel_state import ChannelState, round_clients


class FakeChannel:
    bandwidth_hz = 5e6

    def round_snr_db(self, round_idx):
        return None if round_idx == 3 else torch.full((2,), float(round_idx))


def _trainer(callbacks=(), schedule=None):
    return SimpleNamespace(callbacks=list(callbacks), datamodule=SimpleNamespace(schedule=schedule))


def test_channel_callback_takes_precedence_and_falls_back_to_previous_round():
    state = ChannelState(UniformSNR(0, 10), bandwidth_hz=None, seed=0)
    trainer = _trainer([object(), FakeChannel()])
    assert state.snr_db(trainer, 2).tolist() == [2.0, 2.0]
    assert state.snr_db(trainer, 3).tolist() == [2.0, 2.0]  # not drawn yet: last round's
    assert state.bandwidth_hz(trainer) == 5e6
    assert ChannelState(None, 1e6, 0).bandwidth_hz(trainer) == 1e6


def test_large_scale_draws_are_seeded_per_round_and_follow_the_schedule():
    schedule = SimpleNamespace(clients=lambda t: [t, t + 1, t + 2])
    trainer = _trainer(schedule=schedule)
    state = ChannelState(UniformSNR(-5, 15, per_round=True), bandwidth_hz=None, seed=4)
    first, again = state.snr_db(trainer, 1), state.snr_db(trainer, 1)
    assert first.shape == (3,) and torch.equal(first, again)
    assert not torch.equal(first, state.snr_db(trainer, 2))
    assert round_clients(_trainer(), 5) == [0]
    assert not ChannelState(None, None, 0).has_snr(_trainer())
    assert ChannelState(None, None, 0).snr_db(_trainer(), 0) is None


def test_named_scalar_prefers_our_module_keys():
    assert named_scalar({"loss": 2.0, "round/train_loss": 1.0}, "train_loss") == 1.0
    assert named_scalar({"val_loss": 3.0}, "val_loss") == 3.0
    assert named_scalar({}, "token_entropy") is None


def test_factor_update_power():
    before = {"a": torch.zeros(2, 2)}
    after = {"a": torch.tensor([[1.0, 0.0], [2.0, 0.0]])}
    assert factor_update_power(before, after).tolist() == [5.0, 2.0]


class FakeOverTheAir:
    """Like OverTheAirAggregation: a large-scale model and a history of round records."""

    bandwidth_hz = 1e6

    def __init__(self):
        self.large_scale = FixedSNR(snr_db=[3.0, 7.0])
        self.history = []


def test_over_the_air_history_then_its_large_scale_as_prior():
    channel = FakeOverTheAir()
    trainer = _trainer([channel], schedule=SimpleNamespace(clients=lambda t: [0, 1]))
    state = ChannelState(None, None, 0)
    assert state.has_snr(trainer)
    assert state.snr_db(trainer, 0).tolist() == [3.0, 7.0]  # nothing drawn yet: prior
    channel.history += [{"round": 0, "snr_db": [1.0, 2.0]}, {"round": 1, "snr_db": [4.0, 5.0]}]
    assert state.snr_db(trainer, 2).tolist() == [4.0, 5.0]
    assert state.snr_db(trainer, 1).tolist() == [4.0, 5.0]
    assert state.snr_db(trainer, 0).tolist() == [1.0, 2.0]
