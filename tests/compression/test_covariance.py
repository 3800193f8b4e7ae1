"""The factor-covariance term against a numpy oracle."""

import numpy as np
import pytest
import torch

from lit_airlora.compression.covariance import factor_covariance
from tests.compression.compression_helpers import MODULES, make_upload, random_adapter


def test_factor_covariance_matches_numpy():
    g = torch.Generator().manual_seed(0)
    uploads = [make_upload(k, 4, 3, g, weight=float(k + 1)) for k in range(3)]
    reference = random_adapter(4, g)
    w = np.array([u.weight for u in uploads]) / sum(u.weight for u in uploads)
    oracle = 0.0
    for module in MODULES:
        As = [u.tensors[f"{module}.lora_A"].double().numpy() for u in uploads]
        Bs = [u.tensors[f"{module}.lora_B"].double().numpy() for u in uploads]
        mean_a = sum(wk * a for wk, a in zip(w, As, strict=True))
        mean_b = sum(wk * b for wk, b in zip(w, Bs, strict=True))
        for wk, a, b in zip(w, As, Bs, strict=True):
            oracle += wk * np.sum(((b - mean_b) @ (a - mean_a)) ** 2)
    assert factor_covariance(uploads, reference) == pytest.approx(oracle, rel=1e-9)


def test_identical_clients_have_no_covariance_and_no_clients_give_zero():
    g = torch.Generator().manual_seed(1)
    upload = make_upload(0, 4, 4, g)
    assert factor_covariance([upload, upload.replace(client_id=1)], upload.tensors) < 1e-20
    assert factor_covariance([], upload.tensors) == 0.0
