"""Element-wise top-k and random-k encoders against numpy oracles, with their bits."""

import math

import numpy as np
import pytest
import torch

from lit_airlora.compression.base import keep_count
from lit_airlora.compression.bits import index_bits
from lit_airlora.compression.randomk import RandomK
from lit_airlora.compression.topk import TopK
from lit_airlora.seeding import make_generator
from tests.compression.compression_helpers import make_upload, random_adapter


def _active(name, tensor, rank):
    return tensor[:rank] if name.endswith("lora_A") else tensor[:, :rank]


def test_topk_keeps_the_largest_active_entries_of_each_tensor():
    g = torch.Generator().manual_seed(0)
    rank, rho = 3, 0.7
    upload = make_upload(1, 4, rank, g)
    encoded, _ = TopK(rho=rho).encode(upload, random_adapter(4, g), g)
    expected_bits = 0
    for name, value in upload.tensors.items():
        active = _active(name, value, rank).numpy()
        k = math.ceil(round((1 - rho) * active.size, 9))
        threshold = np.sort(np.abs(active).ravel())[::-1][k - 1]
        oracle = np.where(np.abs(active) >= threshold, active, 0.0)
        sent = _active(name, encoded.tensors[name], rank).numpy()
        np.testing.assert_array_equal(sent, oracle)
        assert int(encoded.masks[name].sum()) == k
        assert not encoded.tensors[name].count_nonzero() > k
        expected_bits += min(k * math.ceil(math.log2(active.size)), active.size)
    assert encoded.meta["index_bits"] == expected_bits
    assert encoded.payload_bits() == 32 * encoded.num_values() + expected_bits


def test_randomk_is_reproducible_per_client_and_round_and_uniform():
    g = torch.Generator().manual_seed(1)
    upload = make_upload(3, 4, 4, g)
    encoder = RandomK(rho=0.5)
    first, _ = encoder.encode(upload, {}, make_generator(11, 3))
    again, _ = encoder.encode(upload, {}, make_generator(11, 3))
    other, _ = encoder.encode(upload, {}, make_generator(11, 4))
    name = "layers.0.q_proj.lora_A"
    assert torch.equal(first.masks[name], again.masks[name])
    assert not torch.equal(first.masks[name], other.masks[name])
    assert first.meta["index_bits"] == 0  # the server replays the positions from the seed
    # Oracle: each of n entries is kept with probability k/n (50k draws, tolerance 0.01).
    n, k = 10, keep_count(10, 0.7)
    counts = np.zeros(n)
    gen = torch.Generator().manual_seed(2)
    for _ in range(5000):
        counts[encoder.select(torch.zeros(n), k, gen).numpy()] += 1
    np.testing.assert_allclose(counts / 5000, k / n, atol=0.03)


def test_unbiased_randomk_scales_kept_values():
    g = torch.Generator().manual_seed(3)
    upload = make_upload(0, 4, 4, g)
    encoded, _ = RandomK(rho=0.75, unbiased=True).encode(upload, {}, make_generator(0, 0))
    name = "layers.0.v_proj.lora_B"
    mask = encoded.masks[name]
    n = upload.tensors[name].numel()
    torch.testing.assert_close(
        encoded.tensors[name][mask], upload.tensors[name][mask] * n / (n // 4)
    )


def test_index_bits_take_the_cheaper_of_positions_and_bitmap():
    assert index_bits(3, 1024) == 30
    assert index_bits(500, 1024) == 1024
    assert index_bits(0, 1024) == 0
    assert keep_count(10, 0.7) == 3 and keep_count(10, 0.0) == 10 and keep_count(3, 0.99) == 1


@pytest.mark.parametrize("encoder_cls", [TopK, RandomK])
def test_rho_outside_unit_interval_is_rejected(encoder_cls):
    with pytest.raises(ValueError, match=r"`rho` \(1.0\) must be in \[0, 1\)"):
        encoder_cls(rho=1.0)
