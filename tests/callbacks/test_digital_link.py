"""DigitalUplink on hand-built uploads: exact at high SNR, counted losses at low SNR."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from lit_airlora.callbacks.digital_link import DigitalUplink
from lit_airlora.channel.abstraction import AbstractionLink
from lit_airlora.channel.bit_level import BitLevelLink
from lit_airlora.channel.fading import RayleighBlock
from lit_airlora.channel.large_scale import FixedSNR, UniformSNR
from lit_airlora.channel.quantize import SCALE_BITS, UniformQuantizer
from lit_airlora.compression.topk import TopK
from lit_airlora.federated.aggregators import FedIT, FFALoRA, identity_reduce
from lit_airlora.federated.remote import remote_plan
from lit_airlora.federated.upload import RoundContext, Upload
from lit_airlora.seeding import round_seed

MODULE = SimpleNamespace(device=torch.device("cpu"))
NAMES = ("m.lora_A", "m.lora_B")


@pytest.fixture(scope="module")
def abstraction() -> AbstractionLink:
    link = AbstractionLink(max_retransmissions=1)
    link.setup("cpu")
    return link


def _upload(client_id: int) -> Upload:
    g = torch.Generator().manual_seed(client_id)
    tensors = {
        "m.lora_A": torch.randn(4, 8, generator=g),
        "m.lora_B": torch.randn(6, 4, generator=g),
    }
    return Upload(client_id, tensors, {"m": 3}, weight=1.0 + client_id)


def _context(
    client_ids, aggregator=None, round_clients=None, round_idx=0, generator_seed=1234
) -> RoundContext:
    return RoundContext(
        round_idx=round_idx,
        uploads=[_upload(c) for c in client_ids],
        global_adapter={},
        aggregator=aggregator or FedIT(),
        ideal_aggregate={},
        reduce=identity_reduce,
        generator_seed=generator_seed,
        round_clients=list(round_clients or client_ids),
    )


def _quantised(upload: Upload, name: str, quantizer) -> torch.Tensor:
    values = upload.tensors[name][upload.sent_mask(name)]
    return quantizer.dequantize(quantizer.quantize(values))


@pytest.mark.parametrize("link_kind", ["abstraction", "bit_level"])
def test_high_snr_delivers_the_quantised_payload(link_kind, abstraction):
    link = abstraction if link_kind == "abstraction" else BitLevelLink(block_length=256)
    callback = DigitalUplink(link, UniformQuantizer(4), large_scale=FixedSNR(35.0))
    ctx = _context([0, 1])
    callback.on_upload_transmit(None, MODULE, ctx)
    for sent, received in zip(_context([0, 1]).uploads, ctx.uploads, strict=True):
        for name in NAMES:
            mask = sent.sent_mask(name)
            assert torch.equal(received.masks[name], mask)
            expected = _quantised(sent, name, UniformQuantizer(4))
            torch.testing.assert_close(received.tensors[name][mask], expected)
        assert received.meta["bits"] == (8 * 3 + 6 * 3) * 4 + 2 * 32
    assert ctx.metrics["comm/bits_delivered"] == ctx.metrics["comm/bits_offered"] == 2 * 232
    assert ctx.metrics["comm/block_errors"] == 0 and ctx.metrics["channel/snr_db_mean"] == 35.0
    assert ("channel/ber" in ctx.metrics) == (link_kind == "bit_level")


def test_very_low_snr_drops_blocks_and_stays_finite():
    link = AbstractionLink(max_retransmissions=1, outage=False)  # every client transmits
    callback = DigitalUplink(link, large_scale=FixedSNR(-10.0), small_scale=RayleighBlock())
    ctx = _context([0, 1, 2])
    callback.on_upload_transmit(None, MODULE, ctx)
    for upload in ctx.uploads:
        for name in NAMES:
            assert torch.isfinite(upload.tensors[name]).all()
            assert not upload.masks[name].any() and upload.tensors[name].eq(0).all()
    metrics = ctx.metrics
    assert metrics["comm/bits_delivered"] == 0 and metrics["comm/blocks_dropped"] >= 3
    assert metrics["comm/block_errors"] == 2 * metrics["comm/blocks_dropped"]  # one retry each
    assert metrics["comm/retransmissions"] == metrics["comm/blocks_dropped"]
    assert metrics["channel/bler"] == 1.0


def test_outage_rule_keeps_the_bler_target_and_names_the_dropped_client(abstraction, caplog):
    """Client 1 at -10 dB is below MCS 0 at the 10% target: it stays silent (no airtime) and its
    upload is dropped, so the BLER of the clients that transmit holds the target."""
    callback = DigitalUplink(abstraction, large_scale=FixedSNR([20.0, -10.0, 20.0]))
    ctx = _context([0, 1, 2])
    with caplog.at_level("INFO", logger="lit_airlora.callbacks.digital_link"):
        callback.on_upload_transmit(None, MODULE, ctx)
    assert [u.client_id for u in ctx.uploads] == [0, 2]
    assert ctx.metrics["channel/outage_clients"] == 1.0
    assert ctx.metrics["channel/bler"] <= abstraction.target_bler
    assert "client 1 (effective SINR" in caplog.text and "outage" in caplog.text
    report = abstraction.transmit(
        [1000, 1000], torch.tensor([20.0, -10.0]), torch.ones(2, 1, 1, 1, dtype=torch.complex64),
        torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert report.extras["outage"].tolist() == [False, True]
    assert float(report.airtime_s[1]) == 0.0 and float(report.energy_j[1]) == 0.0
    assert float(report.extras["tbler"][0]) <= abstraction.target_bler


def test_results_do_not_depend_on_how_clients_are_split(abstraction):
    # Rank-independence: clients simulated together or on two "ranks" give the same uploads.
    callback = DigitalUplink(
        abstraction, large_scale=FixedSNR([3.0, 8.0, 1.0]), small_scale=RayleighBlock()
    )
    together = _context([0, 1, 2])
    callback.on_upload_transmit(None, MODULE, together)
    parts = [_context([0], round_clients=[0, 1, 2]), _context([1, 2], round_clients=[0, 1, 2])]
    for part in parts:
        callback.on_upload_transmit(None, MODULE, part)
    split = parts[0].uploads + parts[1].uploads
    for a, b in zip(together.uploads, split, strict=True):
        for name in NAMES:
            assert torch.equal(a.tensors[name], b.tensors[name])
        assert a.meta == b.meta
    offered = sum(p.metrics["comm/bits_offered"] for p in parts)
    assert offered == together.metrics["comm/bits_offered"]


def test_only_trainable_tensors_and_sent_entries_travel(abstraction):
    callback = DigitalUplink(abstraction, UniformQuantizer(8), large_scale=FixedSNR(30.0))
    ctx = _context([0], aggregator=FFALoRA())
    sparse = torch.zeros(6, 4, dtype=torch.bool)
    sparse[::2, 0] = True
    ctx.uploads[0] = ctx.uploads[0].replace(masks={"m.lora_B": sparse})
    original = ctx.uploads[0]
    callback.on_upload_transmit(None, MODULE, ctx)
    received = ctx.uploads[0]
    assert received.meta["bits"] == 3 * 8 + 32
    assert torch.equal(received.tensors["m.lora_A"], original.tensors["m.lora_A"])
    assert torch.equal(received.masks["m.lora_B"], sparse)
    assert received.tensors["m.lora_B"][~sparse].eq(0).all()


def test_airtime_is_max_for_ofdma_and_sum_for_tdma(abstraction):
    airtime = {}
    for access in ("ofdma", "tdma"):
        callback = DigitalUplink(abstraction, large_scale=FixedSNR(20.0), multiple_access=access)
        ctx = _context([0, 1, 2])
        callback.on_upload_transmit(None, MODULE, ctx)
        per_client = [u.meta["airtime_s"] for u in ctx.uploads]
        airtime[access] = (ctx.metrics["comm/airtime_s"], per_client)
    assert airtime["ofdma"][0] == pytest.approx(max(airtime["ofdma"][1]))
    assert airtime["tdma"][0] == pytest.approx(sum(airtime["tdma"][1]))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"link": "abstraction"}, TypeError, "`link`"),
        ({"quantizer": 8}, TypeError, "`quantizer`"),
        ({"large_scale": 20.0}, TypeError, "`large_scale`"),
        ({"multiple_access": "cdma"}, ValueError, "multiple_access"),
        ({"seed": 1.5}, TypeError, "`seed`"),
    ],
)
def test_invalid_arguments_are_named(kwargs, error, match, abstraction):
    with pytest.raises(error, match=match):
        DigitalUplink(**{"link": abstraction, **kwargs})


def test_state_key_distinguishes_instances(abstraction):
    assert DigitalUplink(abstraction).state_key != DigitalUplink(abstraction, name="b").state_key


def test_sparsified_upload_pays_for_its_index(abstraction):
    # Top-k sets meta["bits"] = 32 x values + index bits; the link must carry quantised values,
    # the scales and the index, and count them all (bits offered, airtime).
    quantizer = UniformQuantizer(8)
    callback = DigitalUplink(abstraction, quantizer, large_scale=FixedSNR(30.0))
    dense = _context([0])
    sparse = _context([0])
    sparse.uploads = [TopK(0.5).encode(u, {}, torch.Generator())[0] for u in sparse.uploads]
    sent = sparse.uploads[0]
    index_bits, num_values = sent.meta["index_bits"], sent.num_values()
    assert index_bits > 0 and sent.meta["bits"] == 32 * num_values + index_bits
    for ctx in (dense, sparse):
        callback.on_upload_transmit(None, MODULE, ctx)
    received = sparse.uploads[0]
    expected = num_values * 8 + len(NAMES) * SCALE_BITS + index_bits
    assert received.meta["bits"] == expected == sparse.metrics["comm/bits_offered"]
    assert received.meta["index_bits"] == index_bits
    assert sparse.metrics["comm/bits_delivered"] == expected
    assert dense.uploads[0].meta["bits"] == (8 * 3 + 6 * 3) * 8 + len(NAMES) * SCALE_BITS
    assert sparse.metrics["comm/airtime_s"] > 0
    for name in NAMES:  # the kept entries arrive, quantised; the dropped ones stay dropped
        mask = sent.masks[name]
        assert torch.equal(received.masks[name], mask)
        torch.testing.assert_close(received.tensors[name][mask], _quantised(sent, name, quantizer))
        assert received.tensors[name][~mask].eq(0).all()


def test_round_snr_db_is_the_snr_the_link_uses(abstraction):
    callback = DigitalUplink(abstraction, large_scale=UniformSNR(0.0, 30.0, per_round=True))
    assert callback.round_snr_db(0) is None  # nothing known yet
    ctx = _context([2, 5], round_idx=3, generator_seed=99)
    callback.on_upload_transmit(None, MODULE, ctx)
    snr_db = callback.round_snr_db(3)
    assert snr_db.dtype == torch.float64
    assert snr_db.tolist() == [u.meta["snr_db"] for u in ctx.uploads]
    # Each client's SNR depends on the round seed, the client and the callback seed only.
    other = DigitalUplink(abstraction, large_scale=callback.large_scale, seed=1)
    other.on_upload_transmit(None, MODULE, _context([5], round_idx=3, generator_seed=99))
    assert other.round_snr_db(3).tolist() != snr_db[1:].tolist()


def test_round_snr_db_predicts_the_rounds_of_our_module(abstraction):
    plan = replace(remote_plan(7, 5), clients=(1, 3))
    callback = DigitalUplink(abstraction, large_scale=UniformSNR(0.0, 30.0, per_round=True))
    assert callback.round_snr_db(5) is None  # nothing known without the plan
    predicted = callback.round_snr_db(5, plan)  # before round 5 is transmitted
    assert predicted.shape == (2,)
    ctx = _context([1, 3], round_idx=5, generator_seed=round_seed(7, 5))
    callback.on_upload_transmit(None, MODULE, ctx)
    assert predicted.tolist() == [u.meta["snr_db"] for u in ctx.uploads]
    assert callback.round_snr_db(6, plan) is None  # a plan of another round says nothing
    callback.on_upload_transmit(None, MODULE, _context([1], round_idx=6, generator_seed=1))
    assert callback.round_snr_db(6).shape == (1,)


def test_the_stage_leaves_the_process_thread_count_alone(abstraction, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    DigitalUplink(abstraction).on_upload_transmit(None, MODULE, _context([0, 1]))
    assert calls == []
