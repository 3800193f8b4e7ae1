"""The encode-stage callback with pluggable encoders."""

import pytest
import torch

from lit_airlora.callbacks.sparsify import Sparsify
from lit_airlora.compression.base import NoCompression
from lit_airlora.compression.randomk import RandomK
from lit_airlora.compression.svd import SVDTruncation
from lit_airlora.compression.topk import TopK
from lit_airlora.seeding import make_generator
from tests.callbacks.soft_helpers import round_context


@pytest.mark.parametrize("encoder", [TopK(0.75), RandomK(0.75), SVDTruncation(0.75)])
def test_encoders_cut_the_payload_and_log_kept_fraction(encoder):
    ctx = round_context()
    before = [u.payload_bits() for u in ctx.uploads]
    Sparsify(encoder).on_upload_encode(None, None, ctx)
    assert all(u.payload_bits() < 0.5 * b for u, b in zip(ctx.uploads, before, strict=True))
    assert ctx.metrics["compress/kept_fraction"] == pytest.approx(0.25, abs=0.01)


def test_random_positions_come_from_the_round_seed_and_client_id():
    ctx = round_context()
    raw = ctx.uploads[1]
    Sparsify(RandomK(0.5)).on_upload_encode(None, None, ctx)
    expected, _ = RandomK(0.5).encode(raw, ctx.global_adapter, make_generator(1234, 1))
    for name, mask in expected.masks.items():
        assert torch.equal(ctx.uploads[1].masks[name], mask)


def test_no_compression_leaves_uploads_unchanged():
    ctx = round_context()
    raw = list(ctx.uploads)
    Sparsify(NoCompression()).on_upload_encode(None, None, ctx)
    assert ctx.uploads == raw and ctx.metrics["compress/kept_fraction"] == 1.0


def test_bad_encoder_and_rho_less_encoder_fail_clearly():
    with pytest.raises(TypeError, match="`encoder` \\(str\\) must be a"):
        Sparsify("topk")
    with pytest.raises(TypeError, match="NoCompression has no sparsity ratio"):
        Sparsify(NoCompression()).set_rho(0.5)
    assert "rho" not in Sparsify(NoCompression()).state_dict()
