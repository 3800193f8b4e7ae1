"""SVD truncation of the local product against a numpy SVD."""

import numpy as np
import pytest
import torch

from lit_airlora.compression.svd import SVDTruncation
from tests.compression.compression_helpers import MODULES, make_upload, random_adapter


def test_svd_truncation_sends_the_best_rank_k_components():
    g = torch.Generator().manual_seed(0)
    max_rank, rank, rho = 5, 4, 0.5
    global_adapter = random_adapter(max_rank, g)
    upload = make_upload(2, max_rank, rank, g)
    encoded, stats = SVDTruncation(rho=rho).encode(upload, global_adapter, g)
    error = 0.0
    for module in MODULES:
        name_a, name_b = f"{module}.lora_A", f"{module}.lora_B"
        local_a = (global_adapter[name_a] + upload.tensors[name_a])[:rank].double().numpy()
        local_b = (global_adapter[name_b] + upload.tensors[name_b])[:, :rank].double().numpy()
        u, s, vt = np.linalg.svd(local_b @ local_a, full_matrices=False)
        oracle = (u[:, :2] * s[:2]) @ vt[:2]
        sent_a = (global_adapter[name_a] + encoded.tensors[name_a])[:2].double().numpy()
        sent_b = (global_adapter[name_b] + encoded.tensors[name_b])[:, :2].double().numpy()
        np.testing.assert_allclose(sent_b @ sent_a, oracle, atol=1e-5)
        assert encoded.masks[name_a].all(dim=1).tolist() == [True, True, False, False, False]
        assert not encoded.tensors[name_a][2:].any()  # not sent: a zero update
        error += float((s[2:] ** 2).sum())
    np.testing.assert_allclose(stats["sparsification_error"], error, rtol=1e-5)
    assert encoded.meta["index_bits"] == 0
    assert encoded.payload_bits() == 32 * 2 * (12 + 10 + 12 + 6)


def test_svd_truncation_needs_both_factors():
    g = torch.Generator().manual_seed(1)
    upload = make_upload(0, 4, 4, g)
    only_b = upload.replace(tensors={n: t for n, t in upload.tensors.items() if "lora_B" in n})
    with pytest.raises(ValueError, match="SVDTruncation rotates both LoRA factors"):
        SVDTruncation(0.5).encode(only_b, random_adapter(4, g), g)
