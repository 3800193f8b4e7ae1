"""Upload <-> payload (the digital uplink's translation over the channel's payload functions):
what is sent, how losses and corrupt codes come back."""

from __future__ import annotations

import torch

from lit_airlora.callbacks.digital_link import decode_upload, encode_upload, sent_index
from lit_airlora.channel.link import received_value_mask
from lit_airlora.channel.payload import payload_bitstream
from lit_airlora.channel.quantize import SCALE_BITS, Float16, UniformQuantizer
from lit_airlora.federated.upload import Upload


def _upload() -> Upload:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "m.lora_A": torch.randn(4, 6, generator=g),
        "m.lora_B": torch.randn(5, 4, generator=g),
    }
    return Upload(client_id=3, tensors=tensors, ranks={"m": 2}, weight=1.0)


def test_round_trip_sends_active_ranks_only():
    upload, quantizer = _upload(), UniformQuantizer(8)
    encoded = encode_upload(upload, ["m.lora_A", "m.lora_B"], quantizer, torch.Generator())
    assert encoded.num_values == 2 * 6 + 5 * 2
    assert encoded.payload_bits == 22 * 8 + 2 * SCALE_BITS
    assert payload_bitstream(encoded).numel() == encoded.payload_bits
    received = decode_upload(upload, encoded, quantizer, torch.ones(22, dtype=torch.bool))
    for name, sent in upload.tensors.items():
        mask = upload.sent_mask(name)
        step = 2 * sent[mask].abs().max() / 255
        assert (received.tensors[name][mask] - sent[mask]).abs().max() <= step / 2 + 1e-6
        assert (received.tensors[name][~mask] == 0).all()
        assert torch.equal(received.masks[name], mask)
    assert upload.masks == {}  # the caller's upload is untouched


def test_lost_values_are_zero_and_unmasked():
    upload, quantizer = _upload(), UniformQuantizer(4)
    encoded = encode_upload(upload, ["m.lora_B"], quantizer, torch.Generator())
    ok = torch.ones(10, dtype=torch.bool)
    ok[3:7] = False
    received = decode_upload(upload, encoded, quantizer, ok)
    mask = received.masks["m.lora_B"]
    assert int(mask.sum()) == 6 and received.tensors["m.lora_B"][~mask].eq(0).all()
    assert torch.equal(received.tensors["m.lora_A"], upload.tensors["m.lora_A"])  # not sent


def test_corrupt_float_codes_count_as_lost():
    upload, quantizer = _upload(), Float16()
    encoded = encode_upload(upload, ["m.lora_A"], quantizer, torch.Generator())
    codes = encoded.codes().clone()
    codes[0] = 0x7E00  # a float16 NaN
    received = decode_upload(upload, encoded, quantizer, torch.ones(12, dtype=torch.bool), codes)
    assert torch.isfinite(received.tensors["m.lora_A"]).all()
    assert int(received.masks["m.lora_A"].sum()) == 11


def test_values_touching_a_lost_block_are_lost():
    ok = torch.tensor([True, False, True])  # blocks of 10 bits; 4-bit values
    mask = received_value_mask(ok, block_bits=10, num_values=7, bits_per_value=4)
    # value bits: [0,4) [4,8) [8,12) [12,16) [16,20) [20,24) [24,28)
    assert mask.tolist() == [True, True, False, False, False, True, True]


def test_explicit_masks_and_index_bits_travel():
    upload, quantizer = _upload(), UniformQuantizer(8)
    mask = torch.zeros(5, 4, dtype=torch.bool)
    mask[[0, 2, 4], [1, 3, 0]] = True
    sparse = upload.replace(masks={"m.lora_B": mask}, meta={"index_bits": 15.0})
    encoded = encode_upload(sparse, ["m.lora_A", "m.lora_B"], quantizer, torch.Generator())
    assert encoded.counts == [12, 3]
    assert encoded.payload_bits == 15 * 8 + 2 * SCALE_BITS + 15  # values, scales, index
    assert payload_bitstream(encoded).numel() == encoded.payload_bits
    received = decode_upload(sparse, encoded, quantizer, torch.ones(15, dtype=torch.bool))
    assert torch.equal(received.masks["m.lora_B"], mask)
    sent = sparse.tensors["m.lora_B"][mask]
    step = 2 * sent.abs().max() / 255
    assert (received.tensors["m.lora_B"][mask] - sent).abs().max() <= step / 2 + 1e-6
    assert received.tensors["m.lora_B"][~mask].eq(0).all()


def test_active_rank_slices_match_the_sent_mask_order():
    upload = _upload()
    for name, tensor in upload.tensors.items():
        index = sent_index(upload, name)
        assert torch.equal(tensor[index].reshape(-1), tensor[upload.sent_mask(name)])
