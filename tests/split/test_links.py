"""Noisy and quantised activation links change the loss as their measured noise predicts."""

import pytest
import torch

from lit_airlora.channel.fading import RayleighBlock
from lit_airlora.channel.large_scale import FixedSNR
from lit_airlora.channel.link import DigitalLink, LinkReport
from lit_airlora.channel.quantize import UniformQuantizer
from lit_airlora.split.cutting import tier_specs
from lit_airlora.split.links import AnalogLink, DigitalTensorLink, IdealLink, QuantizedLink
from lit_airlora.split.step import Hop, split_step
from lit_airlora.split.tiers import DecoderParts, tier_forward
from tests.split.test_equality import _batch, _tiny


@pytest.fixture(scope="module")
def reference():
    """The tiny model's tiers, a batch, the user's activation, the ideal loss and its gradient
    with respect to what the edge receives."""
    model, batch = _tiny("llama"), _batch()
    parts = DecoderParts.of(model)
    specs = tier_specs((1, 3), parts.num_layers)
    sent = tier_forward(parts, specs[0], batch["input_ids"], batch["attention_mask"]).detach()
    received = sent.clone().requires_grad_(True)
    edge = tier_forward(parts, specs[1], received, batch["attention_mask"])
    loss = tier_forward(parts, specs[2], edge, batch["attention_mask"], batch["labels"])
    loss.backward()
    return parts, specs, batch, sent, float(loss), received.grad


def _loss_and_noise(reference, link, seed=3):
    """Loss change with ``link`` on the uplink, the noise it added, dL/dh and the activation."""
    parts, specs, batch, sent, loss, grad = reference
    noise = link.send(sent, torch.Generator().manual_seed(seed)).received - sent
    hops = [Hop("user_edge", link, IdealLink()), Hop("edge_cloud", IdealLink(), IdealLink())]
    gens = [(torch.Generator().manual_seed(seed), torch.Generator())] * 2
    stats = split_step(parts, specs, hops, batch, gens)
    return stats.loss - loss, noise, grad, sent


@pytest.mark.parametrize(
    ("link", "first_order"),
    [
        (QuantizedLink(UniformQuantizer(8)), True),
        (AnalogLink(FixedSNR(30.0)), True),
        (QuantizedLink(UniformQuantizer(4)), False),
        (AnalogLink(FixedSNR(20.0), RayleighBlock()), False),
    ],
    ids=["q8", "awgn30", "q4", "rayleigh20"],
)
def test_loss_change_follows_the_links_noise(reference, link, first_order):
    """Small noise (8 bits, 30 dB) moves the loss by the first-order term <dL/dh, noise> of the
    noise actually added, within 10% (plus 1e-5 for float rounding); any noise stays within
    the Cauchy-Schwarz bound |dL/dh| |noise| (x1.5 for second-order terms)."""
    change, noise, grad, _ = _loss_and_noise(reference, link)
    predicted = float((grad * noise).sum())
    assert float(noise.abs().max()) > 0 and change != 0.0
    if first_order:
        assert abs(change - predicted) <= 0.1 * abs(predicted) + 1e-5
    assert abs(change) <= 1.5 * float(grad.norm() * noise.norm())


def test_noise_matches_the_link_model(reference):
    """Quantisation error <= step / 2; AWGN noise per value has variance N_0 * mean(x^2) (SNR
    30 dB; 1152 values, so the MSE estimate is within 15%)."""
    _, noise, _, sent = _loss_and_noise(reference, QuantizedLink(UniformQuantizer(4)))
    step = 2 * float(sent.abs().max()) / 15
    assert float(noise.abs().max()) <= step / 2 + 1e-6
    _, noise, _, sent = _loss_and_noise(reference, AnalogLink(FixedSNR(30.0)))
    expected = 1e-3 * float(sent.pow(2).mean())
    assert float(noise.pow(2).mean()) == pytest.approx(expected, rel=0.15)


class _LoseBlock(DigitalLink):
    """A test double: blocks of 64 bits, block 1 lost, 1 ms per block."""

    def transmit(self, payloads, snr_db, fading, generator):
        bits = int(payloads[0])
        blocks = -(-bits // 64)
        ok = torch.ones(blocks, dtype=torch.bool)
        ok[1] = False
        f64 = torch.tensor([float(bits)], dtype=torch.float64)
        i64 = torch.tensor([blocks], dtype=torch.int64)
        zero = torch.zeros(1, dtype=torch.int64)
        return LinkReport(
            [ok],
            [64],
            [None],
            f64,
            f64 - 64,
            i64,
            zero + 1,
            zero,
            1e-3 * i64.double(),
            0.2e-3 * i64.double(),
            zero,
            zero,
        )


def test_digital_link_zeroes_values_of_lost_blocks():
    """8-bit codes, 64-bit blocks: losing block 1 zeroes values 8-15 only; the rest arrive
    quantised; bits = 8 per value + the 32-bit scale; airtime from the link's report."""
    x = torch.linspace(-1.0, 1.0, 40).view(4, 10)
    out = DigitalTensorLink(_LoseBlock(), UniformQuantizer(8)).send(x, torch.Generator())
    flat = out.received.flatten()
    assert bool((flat[8:16] == 0).all()) and out.bits == 40 * 8 + 32
    kept = torch.cat([flat[:8], flat[16:]]) - torch.cat([x.flatten()[:8], x.flatten()[16:]])
    assert float(kept.abs().max()) <= 1.0 / 255 + 1e-6 and out.airtime_s == pytest.approx(6e-3)
    assert out.energy_j == pytest.approx(1.2e-3)  # the digital link's own report


def test_energy_is_the_sending_tiers_power_times_airtime():
    """Digital: airtime = bits / rate; analog: one complex symbol per value pair at 1 / B."""
    x = torch.linspace(-1.0, 1.0, 40).view(4, 10)
    sent = QuantizedLink(UniformQuantizer(8), rate_bps=1e6, tx_power_w=0.5).send(
        x, torch.Generator()
    )
    assert sent.airtime_s == pytest.approx((40 * 8 + 32) / 1e6, rel=1e-12)
    assert sent.energy_j == pytest.approx(0.5 * sent.airtime_s, rel=1e-12)
    ideal = IdealLink(rate_bps=2e6, tx_power_w=3.0).send(x, torch.Generator())
    assert ideal.energy_j == pytest.approx(3.0 * 40 * 32 / 2e6, rel=1e-12)
    analog = AnalogLink(FixedSNR(20.0), bandwidth_hz=1e5, tx_power_w=2.0).send(x, torch.Generator())
    assert analog.symbols == 20 and analog.energy_j == pytest.approx(2.0 * 20 / 1e5, rel=1e-12)
