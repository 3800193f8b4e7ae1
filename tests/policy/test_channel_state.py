"""Channel state for observations: channel callbacks first, then a seeded large-scale model."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import torch

from lit_airlora.callbacks.over_the_air import OverTheAirAggregation
from lit_airlora.channel.fading import AWGN
from lit_airlora.channel.large_scale import FixedSNR, UniformSNR
from lit_airlora.federated.remote import remote_plan
from lit_airlora.policy.adapter_state import factor_update_power, named_scalar
from lit_airlora.policy.channel_state import ChannelState, SNRReporter, round_clients


class FakeChannel(SNRReporter):
    def round_snr_db(self, round_idx, plan=None):
        return None if round_idx == 3 else torch.full((2,), float(round_idx))

    def reported_bandwidth_hz(self):
        return 5e6


class DuckChannel:
    """Has the methods but is not an SNRReporter: not discovered by duck typing."""

    bandwidth_hz = 7e6

    def round_snr_db(self, round_idx, plan=None):
        return torch.zeros(2)


def _trainer(callbacks=()):
    return SimpleNamespace(callbacks=list(callbacks))


def _plan(round_idx, clients):
    return replace(remote_plan(0, round_idx), clients=tuple(clients))


def test_channel_callback_takes_precedence_and_falls_back_to_previous_round():
    state = ChannelState(UniformSNR(0, 10), bandwidth_hz=None, seed=0)
    trainer = _trainer([object(), FakeChannel()])
    assert state.snr_db(trainer, 2).tolist() == [2.0, 2.0]
    assert state.snr_db(trainer, 3).tolist() == [2.0, 2.0]  # not drawn yet: last round's
    assert state.bandwidth_hz(trainer) == 5e6
    assert ChannelState(None, 1e6, 0).bandwidth_hz(trainer) == 1e6
    assert not ChannelState(None, None, 0).has_snr(_trainer([DuckChannel()]))


def test_large_scale_draws_are_seeded_per_round_and_follow_the_plan():
    trainer = _trainer()
    state = ChannelState(UniformSNR(-5, 15, per_round=True), bandwidth_hz=None, seed=4)
    first = state.snr_db(trainer, 1, _plan(1, [1, 2, 3]))
    again = state.snr_db(trainer, 1, _plan(1, [1, 2, 3]))
    assert first.shape == (3,) and torch.equal(first, again)
    assert not torch.equal(first, state.snr_db(trainer, 2, _plan(2, [1, 2, 3])))
    assert round_clients(None) == [0]
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


def test_over_the_air_history_then_its_large_scale_as_prior():
    channel = OverTheAirAggregation(FixedSNR(snr_db=[3.0, 7.0]), AWGN(), bandwidth_hz=1e6)
    trainer = _trainer([channel])
    state = ChannelState(None, None, 0)
    assert state.has_snr(trainer) and state.bandwidth_hz(trainer) == 1e6
    plan = _plan(0, [0, 1])
    assert state.snr_db(trainer, 0, plan).tolist() == [3.0, 7.0]  # nothing drawn yet: prior
    channel.history += [{"round": 0, "snr_db": [1.0, 2.0]}, {"round": 1, "snr_db": [4.0, 5.0]}]
    assert state.snr_db(trainer, 2).tolist() == [4.0, 5.0]
    assert state.snr_db(trainer, 1).tolist() == [4.0, 5.0]
    assert state.snr_db(trainer, 0).tolist() == [1.0, 2.0]
