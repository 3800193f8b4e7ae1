"""HetLoRA (Cho et al.) and FedSA-LoRA against numpy oracles of the published rules."""

import numpy as np
import pytest
import torch

from lit_airlora.federated.fedsa import FedSALoRA
from lit_airlora.federated.heterogeneous import HeteroFL, HetLoRA
from lit_airlora.federated.upload import Upload

R, D_IN, D_OUT = 4, 6, 5


def _global(seed=9):
    g = torch.Generator().manual_seed(seed)
    return {
        "m.lora_A": torch.randn(R, D_IN, generator=g),
        "m.lora_B": torch.randn(D_OUT, R, generator=g),
    }


def _local(rank, seed):
    """A client's trained factors (full max_rank tensors: beyond ``rank`` they hold leftovers)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "m.lora_A": torch.randn(R, D_IN, generator=g),
        "m.lora_B": torch.randn(D_OUT, R, generator=g),
    }


def _client_uploads(aggregator, ranks, glob):
    uploads = []
    for k, rank in enumerate(ranks):
        local = _local(rank, seed=k)
        delta = {n: local[n] - glob[n] for n in local}
        upload = Upload(k, delta, {"m": rank}, weight=float(10 + k))
        uploads.append((aggregator.client_upload(upload, local, glob), local))
    return uploads


def test_hetlora_zero_pads_and_weights_by_the_frobenius_norm_of_b_a():
    ranks, glob = (1, 2, 4), _global()
    agg = HetLoRA()
    pairs = _client_uploads(agg, ranks, glob)
    out = agg.aggregate([u for u, _ in pairs], glob)
    # numpy oracle: pad each client's module with zeros beyond its rank, weight by ||B_k A_k||_F
    padded_a, padded_b, norms = [], [], []
    for (_, local), rank in zip(pairs, ranks, strict=True):
        a, b = local["m.lora_A"].numpy().copy(), local["m.lora_B"].numpy().copy()
        a[rank:], b[:, rank:] = 0.0, 0.0
        padded_a.append(a), padded_b.append(b), norms.append(np.linalg.norm(b @ a, "fro"))
    p = np.array(norms) / np.sum(norms)
    new_a = np.tensordot(p, np.stack(padded_a), axes=1)
    new_b = np.tensordot(p, np.stack(padded_b), axes=1)
    np.testing.assert_allclose(glob["m.lora_A"] + out["m.lora_A"], new_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(glob["m.lora_B"] + out["m.lora_B"], new_b, rtol=1e-5, atol=1e-6)
    # HeteroFL on the same updates keeps the global's components a client does not hold.
    delta_uploads = [
        Upload(k, {n: _local(r, k)[n] - glob[n] for n in glob}, {"m": r}, 1.0)
        for k, r in enumerate(ranks)
    ]
    hetero = HeteroFL().aggregate(delta_uploads, glob)
    assert not torch.allclose(hetero["m.lora_A"], out["m.lora_A"])
    assert not HetLoRA.is_linear and HeteroFL.is_linear


def test_hetlora_self_prunes_a_client_whose_tail_carries_little():
    glob = _global()
    local = _local(4, seed=0)
    local["m.lora_A"][3] *= 1e-4  # the last component (25% of rank 4) carries ~nothing
    upload = Upload(0, {n: local[n] - glob[n] for n in local}, {"m": 4}, 1.0)
    agg = HetLoRA(prune_fraction=0.25, prune_threshold=0.01)
    agg.client_upload(upload, local, glob)
    assert agg.client_rank_cap(0, None) == 3 and agg.client_rank_cap(0, 2) == 2
    other = _local(4, seed=1)  # a client whose tail matters keeps its rank
    agg.client_upload(Upload(1, dict(other), {"m": 4}, 1.0), other, glob)
    assert agg.client_rank_cap(1, None) is None
    restored = HetLoRA()
    restored.load_state_dict(agg.state_dict())
    assert restored.client_rank_cap(0, None) == 3


def test_fedsa_lora_averages_a_only_and_clients_resume_their_own_b():
    agg, glob = FedSALoRA(), _global()
    assert agg.trained("m.lora_B") and not agg.trainable("m.lora_B") and agg.trainable("m.lora_A")
    locals_ = [_local(4, seed=k) for k in range(3)]
    uploads = []
    for k, local in enumerate(locals_):
        delta = {"m.lora_A": local["m.lora_A"] - glob["m.lora_A"]}
        uploads.append(agg.client_upload(Upload(k, delta, {"m": 4}, float(k + 1)), local, glob))
    out = agg.aggregate(uploads, glob)
    assert set(out) == {"m.lora_A"}
    w = np.array([1.0, 2.0, 3.0])
    oracle = np.tensordot(w / w.sum(), np.stack([loc["m.lora_A"].numpy() for loc in locals_]), 1)
    np.testing.assert_allclose(glob["m.lora_A"] + out["m.lora_A"], oracle, rtol=1e-5, atol=1e-6)
    start = agg.client_start(1, glob)
    torch.testing.assert_close(start["m.lora_B"], locals_[1]["m.lora_B"])
    torch.testing.assert_close(start["m.lora_A"], glob["m.lora_A"])
    assert agg.client_start(7, glob) is glob  # a client seen for the first time


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"prune_fraction": 0.0}, "prune_fraction"), ({"prune_threshold": 1.0}, "prune_threshold")],
)
def test_hetlora_refuses_bad_pruning_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HetLoRA(**kwargs)
