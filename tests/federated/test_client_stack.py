"""Stacked clients against the same clients trained in turn (the sequential loop's steps).

Tolerance: float32, ``atol = 1e-5`` on adapters of magnitude ~0.4 that 3 AdamW steps move by
~0.03 (3e-7 seen here). Not
bit-exact: the base model's matmuls over the stacked batch (and a ``bmm`` instead of one matmul
per client) sum in another order, so values differ in the last bits.
"""

from __future__ import annotations

import pytest
import torch

from lit_airlora.federated.client_stack import ClientStack
from lit_airlora.lora.config import LoRASettings
from lit_airlora.lora.layers import adapter_tensors, load_adapter_tensors, parameter_of
from lit_airlora.module import FederatedLoRAModule
from lit_airlora.tasks.causal_lm import next_token_loss

ATOL = 1e-5
MAX_NORM = 0.05  # well under the gradients' norms (checked): clipping is active
SEQ = 12


@pytest.fixture(scope="module")
def module(tiny_llama_dir):
    torch.manual_seed(0)
    settings = LoRASettings(max_rank=4, target_modules=["q_proj", "v_proj"])
    return FederatedLoRAModule(model=tiny_llama_dir, lora=settings, learning_rate=1e-2)


def _starts(module, clients: int) -> list[dict[str, torch.Tensor]]:
    """Different non-zero adapters (B too: both factors get gradients from the first step)."""
    g = torch.Generator().manual_seed(1)
    base = module.read_adapter()
    return [
        {n: torch.randn(t.shape, generator=g) * 0.1 for n, t in base.items()}
        for _ in range(clients)
    ]


def _ranks(module, caps: list[int]) -> list[dict[str, int]]:
    names = sorted(module.lora_layers)
    return [{n: max(1, cap - i % 2) for i, n in enumerate(names)} for cap in caps]


def _batches(rows: list[int], steps: int, seed: int = 2) -> list[list[dict]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in rows:
        client = []
        for _ in range(steps):
            ids = torch.randint(3, 250, (n, SEQ), generator=g)
            labels = ids.clone()
            labels[0, -3:] = -100  # some unscored positions
            client.append(
                {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
            )
        out.append(client)
    return out


def _trained(module) -> list[str]:
    return [f"{n}.{k}" for n in module.lora_layers for k in ("lora_A", "lora_B")]


def _sequential(module, starts, ranks, batches, norms: list | None = None):
    """The clients in turn on the live peft model (rank-mask hooks), as the module's loop."""
    params = [parameter_of(module.lora_layers, name) for name in _trained(module)]
    out = []
    for start, rank_map, client_batches in zip(starts, ranks, batches, strict=True):
        load_adapter_tensors(module.lora_layers, start)
        module.rank_masks.set_ranks(rank_map, truncate="none")
        optimizer = module.build_optimizer(params)
        for batch in client_batches:
            logits = module.model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            loss = next_token_loss(logits, batch["labels"])
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
            if norms is not None:
                norms.append(float(norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        out.append(adapter_tensors(module.lora_layers))
    return out


def _stack(module, starts, ranks):
    return ClientStack(
        module.model,
        module.lora_layers,
        starts,
        ranks,
        _trained(module),
        module.build_optimizer,
        max_norm=MAX_NORM,
    )


def _stacked(module, starts, ranks, batches):
    stack = _stack(module, starts, ranks)
    steps = max(len(b) for b in batches)
    results = [stack.step([b[j] if j < len(b) else None for b in batches]) for j in range(steps)]
    return [stack.adapter(c) for c in range(len(starts))], results


def _assert_close(a: dict, b: dict, atol: float = ATOL) -> None:
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


@pytest.mark.parametrize("rows", [[2, 2, 2, 2], [1, 3, 2]], ids=["equal-rows", "unequal-rows"])
def test_stacked_steps_match_the_clients_in_turn(module, rows):
    clients = len(rows)
    starts, ranks = _starts(module, clients), _ranks(module, [4, 2, 3, 1][:clients])
    batches = _batches(rows, steps=3)
    batches[-1] = batches[-1][:2]  # a client with fewer steps sits the last one out
    norms = []
    expected = _sequential(module, starts, ranks, batches, norms)
    assert min(norms) > 2 * MAX_NORM  # every step clipped
    got, results = _stacked(module, starts, ranks, batches)
    for c in range(clients):
        _assert_close(got[c], expected[c])
        # Components past a client's rank never move (its own rank mask, not another's).
        for name, rank in ranks[c].items():
            torch.testing.assert_close(
                got[c][f"{name}.lora_B"][:, rank:], starts[c][f"{name}.lora_B"][:, rank:]
            )
    assert results[2][-1] is None and all(r.stepped for step in results for r in step if r)


def test_a_client_gradient_never_reaches_another(module):
    starts, ranks = _starts(module, 2), _ranks(module, [4, 3])
    x, y, z = _batches([2, 2, 2], steps=2)
    first, _ = _stacked(module, starts, ranks, [x, y])
    second, _ = _stacked(module, starts, ranks, [x, z])
    _assert_close(first[0], second[0], atol=1e-6)  # client 0 blind to client 1's batch
    alone = _sequential(module, starts[:1], ranks[:1], [x])[0]
    _assert_close(first[0], alone)  # and its step its own (not a mean over the stack)
    assert not torch.allclose(
        first[1][f"{sorted(module.lora_layers)[0]}.lora_B"],
        second[1][f"{sorted(module.lora_layers)[0]}.lora_B"],
    )


def test_a_non_finite_client_is_skipped_alone(module):
    starts, ranks = _starts(module, 2), _ranks(module, [4, 4])
    starts[1] = {n: t.clone() for n, t in starts[1].items()}
    name = f"{sorted(module.lora_layers)[0]}.lora_B"
    starts[1][name][0, 0] = float("inf")
    batches = _batches([2, 2], steps=2)
    got, results = _stacked(module, starts, ranks, batches)
    assert [r[1].stepped for r in results] == [False, False]
    assert all(r[0].stepped for r in results)
    _assert_close(got[1], starts[1], atol=0)  # never stepped
    _assert_close(got[0], _sequential(module, starts[:1], ranks[:1], batches[:1])[0])
