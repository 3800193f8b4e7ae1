"""Aggregation maths against numpy oracles; DDP-style split sums equal one-process sums."""

import numpy as np
import pytest
import torch

from lit_airlora.federated.aggregators import FedIT, FFALoRA
from lit_airlora.federated.heterogeneous import HeteroFL
from lit_airlora.federated.upload import Upload

NAMES = ("m.lora_A", "m.lora_B")


def _uploads(num_clients=4, ranks=(4, 4, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    uploads = []
    for k in range(num_clients):
        r = ranks[k]
        a = torch.zeros(4, 6)
        b = torch.zeros(5, 4)
        a[:r] = torch.randn(r, 6, generator=g)
        b[:, :r] = torch.randn(5, r, generator=g)
        uploads.append(Upload(k, {"m.lora_A": a, "m.lora_B": b}, {"m": r}, weight=float(k + 1)))
    return uploads


def _template():
    return {"m.lora_A": torch.zeros(4, 6), "m.lora_B": torch.zeros(5, 4)}


def test_fedit_is_the_weighted_mean():
    uploads = _uploads()
    out = FedIT().aggregate(uploads, _template())
    w = np.array([u.weight for u in uploads])
    for name in NAMES:
        stacked = np.stack([u.tensors[name].numpy() for u in uploads])
        oracle = np.tensordot(w, stacked, axes=1) / w.sum()
        np.testing.assert_allclose(out[name].numpy(), oracle, rtol=1e-6, atol=1e-7)


def test_split_over_ranks_equals_one_process():
    uploads = _uploads()
    agg = FedIT()
    left, right = (
        agg.partial_sums(uploads[:1], _template()),
        agg.partial_sums(uploads[1:], _template()),
    )
    summed = {n: left[n] + right[n] for n in left}
    split = agg.finalize(summed)
    whole = agg.aggregate(uploads, _template())
    for name in NAMES:
        # float64 partial sums: the split changes the sum by ~1e-16, gone in the float32 cast.
        assert torch.equal(split[name].to(whole[name].dtype), whole[name])


def test_ffa_lora_trains_and_sends_only_b():
    agg = FFALoRA()
    assert not agg.trainable("m.lora_A") and agg.trainable("m.lora_B")
    assert set(agg.aggregate(_uploads(), _template())) == {"m.lora_B"}


def test_heterofl_averages_each_component_over_its_senders():
    uploads = _uploads(ranks=(1, 2, 4, 4))
    out = HeteroFL().aggregate(uploads, _template())
    w = np.array([u.weight for u in uploads])
    for name in NAMES:
        stacked = np.stack([u.tensors[name].numpy() for u in uploads])
        sent = np.stack([u.sent_mask(name).numpy() for u in uploads]).astype(float)
        num = np.tensordot(w, stacked * sent, axes=1)
        den = np.tensordot(w, sent, axes=1)
        oracle = np.where(den > 0, num / np.maximum(den, 1e-30), 0.0)
        np.testing.assert_allclose(out[name].numpy(), oracle, rtol=1e-6, atol=1e-7)


def test_no_uploads_anywhere_gives_a_zero_update():
    out = FedIT().aggregate([], _template())
    assert all(t.abs().max() == 0 for t in out.values())


def test_payload_counts_only_active_ranks():
    upload = _uploads(ranks=(2, 4, 4, 4))[0]
    assert upload.num_values() == 2 * 6 + 5 * 2
    assert upload.payload_bits() == pytest.approx(32 * 22)
