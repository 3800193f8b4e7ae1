"""Link helpers: which values survive lost blocks, one generator per client."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.channel.link import client_generators, received_value_mask


def _per_value_oracle(block_ok, block_bits, num_values, bits_per_value):
    """Value ``i`` is kept iff the blocks of its first and last bit arrived."""
    start = torch.arange(num_values) * bits_per_value
    first, last = start // block_bits, (start + bits_per_value - 1) // block_bits
    return block_ok[first] & block_ok[last]


@pytest.mark.parametrize("block_bits,bits_per_value", [(10, 4), (16, 8), (7, 2), (13, 13)])
def test_lost_block_ranges_match_the_per_value_lookup(block_bits, bits_per_value):
    generator = torch.Generator().manual_seed(block_bits)
    num_values = 50
    # Payload: the values, then 20 bits of side information (blocks there may be lost too).
    num_blocks = -(-(num_values * bits_per_value + 20) // block_bits)
    for _ in range(20):
        block_ok = torch.rand(num_blocks, generator=generator) > 0.3
        mask = received_value_mask(block_ok, block_bits, num_values, bits_per_value)
        oracle = _per_value_oracle(block_ok, block_bits, num_values, bits_per_value)
        assert torch.equal(mask, oracle)


def test_all_blocks_received_or_lost():
    ok = torch.ones(4, dtype=torch.bool)
    assert received_value_mask(ok, 8, 10, 3).all()
    assert not received_value_mask(~ok, 8, 10, 3).any()
    with pytest.raises(ValueError, match="bits_per_value"):
        received_value_mask(ok, 8, 10, 16)


def test_client_generators():
    shared = torch.Generator()
    assert client_generators(shared, 3) == [shared] * 3
    own = [torch.Generator(), torch.Generator()]
    assert client_generators(own, 2) == own
    with pytest.raises(ValueError, match="one per client"):
        client_generators(own, 3)
