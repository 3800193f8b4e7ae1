"""SOFT's maths: importance vs singular values, exact error from Gram matrices, payload, bits."""

import math

import pytest
import torch

from lit_airlora.compression.components import ModuleFactors
from lit_airlora.compression.lowrank import factored_frobenius_sq
from lit_airlora.compression.soft import (
    SOFTEncoder,
    adapter_error_model,
    component_errors,
    expected_error_fraction,
    soft_payload_bits,
    top_components,
)
from lit_airlora.lora.masks import component_importance
from tests.compression.compression_helpers import (
    DIMS,
    MODULES,
    make_upload,
    orthogonal_factors,
    random_adapter,
)


def test_importance_equals_singular_values_under_orthogonality():
    g = torch.Generator().manual_seed(0)
    singular = torch.tensor([5.0, 0.3, 2.0, 1.0, 0.7])
    A, B = orthogonal_factors(40, 30, singular, g)
    s = component_importance(A, B)
    torch.testing.assert_close(s, singular, rtol=1e-5, atol=1e-6)
    svd = torch.linalg.svdvals(B.double() @ A.double())[:5]
    torch.testing.assert_close(s.sort(descending=True).values.double(), svd, rtol=1e-5, atol=1e-6)


def test_sparsification_error_is_the_dropped_energy_under_orthogonality():
    g = torch.Generator().manual_seed(1)
    singular = torch.tensor([5.0, 0.3, 2.0, 1.0, 0.7])
    A, B = orthogonal_factors(40, 30, singular, g)
    keep = top_components(component_importance(A, B), 3)
    assert keep.tolist() == [True, False, True, True, False]
    zeros = torch.zeros_like
    errors = component_errors(ModuleFactors(A, B, zeros(A), zeros(B)), keep)
    assert errors["sparsification_error"] == pytest.approx(0.3**2 + 0.7**2, rel=1e-5)
    assert errors["error_estimate"] == pytest.approx(0.3**2 + 0.7**2, rel=1e-5)


def test_gram_error_matches_the_dense_product_for_any_factors():
    g = torch.Generator().manual_seed(2)
    A, B = torch.randn(6, 20, generator=g), torch.randn(15, 6, generator=g)
    Ag, Bg = torch.randn(6, 20, generator=g), torch.randn(15, 6, generator=g)
    keep = torch.tensor([True, False, True, False, False, True])
    errors = component_errors(ModuleFactors(A, B, Ag, Bg), keep)
    dense = (B.double() @ A.double() - B[:, keep].double() @ A[keep].double()).square().sum()
    assert errors["sparsification_error"] == pytest.approx(float(dense), rel=1e-9)
    server_B = torch.where(keep, B, Bg).double()
    server_A = torch.where(keep[:, None], A, Ag).double()
    update = (B.double() @ A.double() - server_B @ server_A).square().sum()
    assert errors["update_error"] == pytest.approx(float(update), rel=1e-9)
    assert factored_frobenius_sq(B, A) == pytest.approx(
        float((B.double() @ A.double()).square().sum())
    )


def test_encoder_sends_kept_components_of_the_update_ranked_on_local_factors():
    g = torch.Generator().manual_seed(3)
    max_rank, rank = 6, 5
    global_adapter = random_adapter(max_rank, g)
    upload = make_upload(7, max_rank, rank, g)
    encoded, stats = SOFTEncoder(rho=0.4).encode(upload, global_adapter, g)
    kept_per_module = math.ceil(0.6 * rank)
    for module in MODULES:
        name_a, name_b = f"{module}.lora_A", f"{module}.lora_B"
        local_a = global_adapter[name_a][:rank] + upload.tensors[name_a][:rank]
        local_b = global_adapter[name_b][:, :rank] + upload.tensors[name_b][:, :rank]
        kept = top_components(component_importance(local_a, local_b), kept_per_module)
        rows = encoded.masks[name_a].all(dim=1)
        assert rows[:rank].tolist() == kept.tolist() and not rows[rank:].any()
        assert encoded.masks[name_b].all(dim=0).tolist() == rows.tolist()
        expected_a = torch.where(rows[:, None], upload.tensors[name_a], 0.0)
        torch.testing.assert_close(encoded.tensors[name_a], expected_a)
        assert not encoded.tensors[name_b][:, ~rows].any()
    values = kept_per_module * sum(d_in + d_out for d_in, d_out in DIMS.values())
    assert encoded.num_values() == values
    assert encoded.meta["index_bits"] == rank * len(MODULES)
    assert encoded.payload_bits() == 32 * values + rank * len(MODULES)
    assert encoded.payload_bits() == soft_payload_bits(0.4, rank, list(DIMS.values()))
    assert set(stats) == set(SOFTEncoder.stat_names) and stats["sparsification_error"] > 0
    assert upload.masks == {} and "bits" not in upload.meta  # the input is not mutated


def test_rho_zero_keeps_everything_and_rho_must_be_in_unit_interval():
    g = torch.Generator().manual_seed(4)
    upload = make_upload(0, 4, 4, g)
    encoded, stats = SOFTEncoder(rho=0.0).encode(upload, random_adapter(4, g), g)
    assert encoded.num_values() == upload.num_values()
    assert stats["sparsification_error"] == 0
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"`rho` \(.*\) must be in \[0, 1\)"):
            SOFTEncoder(rho=bad)
    with pytest.raises(ValueError, match="`rho`"):
        SOFTEncoder().set_rho(1.0)


def test_expected_error_fraction():
    s = torch.tensor([1.0, 3.0, 2.0, 0.0])
    assert expected_error_fraction(s, 0.5) == pytest.approx(1.0 / 14.0)  # keeps 3 and 2
    assert expected_error_fraction(s, 0.0) == 0.0
    assert expected_error_fraction(torch.zeros(4), 0.5) == pytest.approx(0.5)  # fresh LoRA
    g = torch.Generator().manual_seed(5)
    errors = adapter_error_model(random_adapter(4, g), 4, [0.0, 0.5, 0.9])
    assert errors[0] == 0 and 0 < errors[1] < errors[2] < 1
