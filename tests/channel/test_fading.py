"""Small-scale fading models: shapes, unit power, per-client determinism, Sionna generator use."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.channel.fading import AWGN, OFDMCDL, OFDMTDL, FlatMIMO, RayleighBlock
from lit_airlora.channel.seeding import sionna_generator
from lit_airlora.seeding import derive_seed, make_generator

SMALL_MODELS = [
    (AWGN, {}),
    (RayleighBlock, {}),
    (FlatMIMO, {"num_rx": 4, "num_tx": 2, "rx_correlation": 0.3}),
    (OFDMTDL, {"model": "C", "num_subcarriers": 8, "num_rx": 2, "num_tx": 2}),
    (OFDMTDL, {"model": "D30", "num_subcarriers": 8}),
    (OFDMCDL, {"model": "B", "num_subcarriers": 8, "num_rx": 4, "num_tx": 2}),
]


@pytest.mark.parametrize(("cls", "kwargs"), SMALL_MODELS)
def test_shape_dtype_and_unit_average_power(cls, kwargs):
    model = cls(**kwargs)
    h = model.draw(300, make_generator(1))  # one batch: per-client draws cost a call each
    assert h.shape == (300, model.num_rx, model.num_tx, model.num_subcarriers)
    assert h.dtype == torch.complex64
    # 300 blocks (several independent taps or antennas each): 15% tolerance on E|h|^2 = 1.
    assert abs(float(h.abs().pow(2).mean()) - 1.0) < 0.15


@pytest.mark.parametrize(("cls", "kwargs"), SMALL_MODELS[1:])
def test_client_channel_depends_only_on_keys_and_client_id(cls, kwargs):
    model = cls(**kwargs)
    h = model.draw_clients([0, 1, 2], keys=(5, 7))
    assert torch.equal(model.draw_clients([2], keys=(5, 7))[0], h[2])
    assert not torch.equal(h[0], h[1])
    assert not torch.equal(model.draw_clients([0], keys=(5, 8))[0], h[0])


def test_sionna_draws_leave_global_rng_and_sionna_registry_untouched():
    from sionna.phy import config

    model = OFDMTDL(num_subcarriers=4)
    registry_before = config._torch_rngs["cpu"]
    state_before = config._torch_rngs["cpu"].get_state()
    global_before = torch.random.get_rng_state()
    model.draw(3, make_generator(0))
    assert config._torch_rngs["cpu"] is registry_before
    assert torch.equal(registry_before.get_state(), state_before)
    assert torch.equal(torch.random.get_rng_state(), global_before)


def test_sionna_generator_restores_registry_on_error():
    from sionna.phy import config

    before = config._torch_rngs["cpu"]
    with pytest.raises(KeyError), sionna_generator(make_generator(1)):
        raise KeyError("boom")
    assert config._torch_rngs["cpu"] is before


def test_blocks_built_lazily_not_in_init():
    model = OFDMCDL(num_subcarriers=4)
    assert model._blocks == {}
    model.setup("cpu")
    assert set(model._blocks) == {"cpu"}


def test_flat_mimo_receive_correlation():
    # Exponential model: E[h_0 h_1^*] = rho between adjacent receive antennas; 4000 draws, +-0.05.
    h = FlatMIMO(num_rx=2, num_tx=1, rx_correlation=0.8).draw(4000, make_generator(3))
    corr = (h[:, 0, 0, 0] * h[:, 1, 0, 0].conj()).mean()
    assert abs(corr.real.item() - 0.8) < 0.05


def test_rayleigh_power_is_exponential():
    # |h|^2 ~ Exp(1): P(|h|^2 < 0.1) = 1 - exp(-0.1) ~ 0.0952; 20000 draws, +-0.01.
    gain = RayleighBlock().draw(20000, make_generator(4)).abs().pow(2)
    assert abs(float((gain < 0.1).double().mean()) - 0.0952) < 0.01


@pytest.mark.parametrize(("cls", "valid"), [(OFDMTDL, "A10"), (OFDMCDL, "'E'")])
def test_unknown_profile_lists_valid_ones(cls, valid):
    with pytest.raises(ValueError, match=f"`model` \\('Z'\\).*{valid}"):
        cls(model="Z")


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: FlatMIMO(0, 2), "num_rx"),
        (lambda: FlatMIMO(2, 2, tx_correlation=1.0), "tx_correlation"),
        (lambda: OFDMTDL(num_subcarriers=0), "num_subcarriers"),
        (lambda: OFDMTDL(subcarrier_spacing_hz=-1.0), "subcarrier_spacing_hz"),
        (lambda: OFDMCDL(delay_spread_s=0.0), "delay_spread_s"),
    ],
)
def test_bad_arguments_name_the_argument(build, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        build()


def test_derive_seed_order_matters_and_fits_63_bits():
    assert derive_seed(1, 2) != derive_seed(2, 1)
    assert 0 <= derive_seed(2**70, -3) < 2**63
