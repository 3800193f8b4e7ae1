"""FLoRA (stacking): the server's product is exactly the weighted sum of the clients' B_k A_k."""

import numpy as np
import pytest
import torch

from lit_airlora.federated.aggregators import FedIT
from lit_airlora.federated.flora import MERGE_SUFFIX, FLoRA, merged_deltas, stack_factors
from lit_airlora.federated.ledger import CommLedger
from lit_airlora.federated.upload import Upload

R, D_IN, D_OUT = 4, 6, 5


def _factors(seed):
    g = torch.Generator().manual_seed(seed)
    return {
        "m.lora_A": torch.randn(R, D_IN, generator=g),
        "m.lora_B": torch.randn(D_OUT, R, generator=g),
    }


def _uploads(ranks, weights):
    """Clients of heterogeneous ranks; beyond its rank a client's tensors hold leftovers."""
    glob, uploads, locals_ = _factors(99), [], []
    for k, (rank, weight) in enumerate(zip(ranks, weights, strict=True)):
        local = _factors(k)
        delta = {n: local[n] - glob[n] for n in local}
        uploads.append(FLoRA().client_upload(Upload(k, delta, {"m": rank}, weight), local, glob))
        locals_.append(local)
    return glob, uploads, locals_


def test_stacking_gives_the_weighted_sum_of_products_for_any_ranks():
    g = torch.Generator().manual_seed(0)
    ranks, p = (1, 3, 2), [0.2, 0.5, 0.3]
    factors = [
        (torch.randn(D_OUT, r, generator=g), torch.randn(r, D_IN, generator=g)) for r in ranks
    ]
    b, a = stack_factors(factors, p)
    assert b.shape == (D_OUT, sum(ranks)) and a.shape == (sum(ranks), D_IN)
    oracle = sum(
        pk * bk.double().numpy() @ ak.double().numpy()
        for pk, (bk, ak) in zip(p, factors, strict=True)
    )
    np.testing.assert_allclose((b @ a).numpy(), oracle, rtol=1e-12, atol=1e-12)


def test_flora_aggregate_is_the_closed_form_weighted_sum_with_heterogeneous_ranks():
    ranks, weights = (1, 2, 4), (10.0, 20.0, 30.0)
    glob, uploads, locals_ = _uploads(ranks, weights)
    out = FLoRA().aggregate(uploads, glob)
    assert set(out) == {"m" + MERGE_SUFFIX}
    # closed form: sum_k p_k (R / r_k) B_k[:, :r_k] A_k[:r_k] (the rank masks' alpha / r_k)
    p = np.array(weights) / sum(weights)
    oracle = sum(
        p_k
        * (R / r)
        * loc["m.lora_B"].double().numpy()[:, :r]
        @ loc["m.lora_A"].double().numpy()[:r]
        for p_k, r, loc in zip(p, ranks, locals_, strict=True)
    )
    np.testing.assert_allclose(merged_deltas(out)["m"].numpy(), oracle, rtol=1e-5, atol=1e-6)
    # FedAvg of A and B separately does not give it (cross terms p_j p_k B_j A_k)
    fedit = FedIT().aggregate(
        [
            Upload(k, loc, {"m": R}, w)
            for k, (loc, w) in enumerate(zip(locals_, weights, strict=True))
        ],
        glob,
    )
    product = (fedit["m.lora_B"].double() @ fedit["m.lora_A"].double()).numpy()
    assert not np.allclose(product, oracle, rtol=1e-2)
    # the ledger counts each client's own rank: r_k (d_in + d_out) float32 values
    assert [u.payload_bits() for u in uploads] == [32.0 * r * (D_IN + D_OUT) for r in ranks]
    assert not FLoRA.is_linear and FLoRA.merges_into_base


def test_flora_partial_sums_over_ranks_add_up_to_the_one_process_aggregate():
    glob, uploads, _ = _uploads((2, 4, 1, 3), (1.0, 2.0, 3.0, 4.0))
    agg = FLoRA()
    parts = [agg.partial_sums(uploads[:1], glob), agg.partial_sums(uploads[1:], glob)]
    summed = agg.finalize({n: parts[0][n] + parts[1][n] for n in parts[0]})
    whole = agg.aggregate(uploads, glob)
    torch.testing.assert_close(summed["m" + MERGE_SUFFIX].float(), whole["m" + MERGE_SUFFIX])


def _stacked_bits(uploads):
    """32 x the size of the stacked tensors FLoRA builds from ``uploads`` (B_stack, A_stack)."""
    factors = [
        (u.tensors["m.lora_B"][:, : u.ranks["m"]], u.tensors["m.lora_A"][: u.ranks["m"]])
        for u in uploads
    ]
    b, a = stack_factors(factors, [u.weight for u in uploads])
    return 32.0 * (b.numel() + a.numel())


def test_ledger_counts_the_stacked_download_of_every_client_and_sums_over_ranks():
    glob, uploads, _ = _uploads((2, 4, 1, 3), (1.0, 2.0, 3.0, 4.0))
    ledger = CommLedger()
    metrics = ledger.record(uploads, lambda s: dict(s), aggregator=FLoRA(), template=glob)
    per_client = _stacked_bits(uploads)  # 32 x (2 + 4 + 1 + 3) x (D_IN + D_OUT)
    assert metrics["comm/adapter_download_bits_per_client"] == per_client == 32.0 * 10 * 11
    assert metrics["comm/adapter_download_bits"] == 4 * per_client
    # two DDP ranks holding two uploads each: the reduce sums their shares
    other = _rank_share(uploads[:2], glob)
    total = CommLedger().record(uploads[2:], lambda s: {"x": s["x"] + other}, FLoRA(), glob)
    assert total["comm/adapter_download_bits"] == metrics["comm/adapter_download_bits"]
    # a second round (ranks 1, 1) adds to the running total, which checkpoints
    second = ledger.record(uploads[2:3] * 2, lambda s: dict(s), FLoRA(), glob)
    assert second["comm/adapter_download_bits"] == 2 * _stacked_bits(uploads[2:3] * 2)
    expected = metrics["comm/adapter_download_bits"] + second["comm/adapter_download_bits"]
    assert second["comm/adapter_download_bits_cumulative"] == expected
    restored = CommLedger()
    restored.load_state_dict(ledger.state_dict())
    assert restored.total_download_bits == expected
    # FedAvg's reply has a fixed size: the global A and B to each of the round's clients
    fedit = CommLedger().record(uploads, lambda s: dict(s), FedIT(), glob)
    assert fedit["comm/adapter_download_bits"] == 4 * 32.0 * R * (D_IN + D_OUT)


def _rank_share(uploads, template):
    """What one DDP rank holding ``uploads`` puts into the ledger's sum over ranks."""
    shares = {}
    CommLedger().record(uploads, lambda s: shares.update(s) or dict(s), FLoRA(), template)
    return shares["x"]


def test_flora_refuses_svd_form_adapters():
    glob = {**_factors(0), "m.lora_E": torch.ones(R)}
    with pytest.raises(ValueError, match="svd_form"):
        FLoRA().partial_sums([], glob)


def test_flora_module_refuses_svd_form_and_rslora_before_loading_anything(tiny_llama_dir):
    from lit_airlora.lora.config import LoRASettings
    from tests.helpers import tiny_module

    for option in ("svd_form", "rslora"):
        lora = LoRASettings(max_rank=4, **{option: True})
        with pytest.raises(ValueError, match=rf"\(FLoRA\) merges plain .* `lora.{option}` is true"):
            tiny_module(tiny_llama_dir, aggregator=FLoRA(), lora=lora)
