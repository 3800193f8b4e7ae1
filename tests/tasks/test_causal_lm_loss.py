"""The causal-LM loss and perplexity against Hugging Face, torchmetrics and float64 oracles."""

import torch

from lit_airlora.tasks.causal_lm import next_token_loss


def test_chunked_loss_matches_the_models_own_loss(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    ids = torch.randint(3, 200, (3, 11), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[0, 5:] = -100  # padding is not scored
    expected = model(input_ids=ids, labels=labels).loss
    expected.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    loss = next_token_loss(model(input_ids=ids).logits, labels, chunk_tokens=4)  # 3 chunks a row
    loss.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7)


def test_perplexity_equals_torchmetrics_and_a_float64_oracle():
    from torchmetrics.text import Perplexity

    from lit_airlora.tasks.causal_lm import NextTokenPerplexity

    g = torch.Generator().manual_seed(0)
    batches = []
    for rows in (3, 2):  # two batches accumulate, as over a validation loader
        logits = 4 * torch.randn(rows, 9, 50, generator=g)
        labels = torch.randint(0, 50, (rows, 9), generator=g)
        labels[0, 6:] = -100  # a padded block's tail is not scored
        batches.append((logits, labels))
    ours, theirs = NextTokenPerplexity(), Perplexity(ignore_index=-100)
    nll, count = 0.0, 0
    for logits, labels in batches:
        ours.update(logits, labels)
        theirs.update(logits[:, :-1], labels[:, 1:])  # the shifted slice the task passed before
        logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
        target = labels[:, 1:]
        mask = target != -100
        nll -= logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)[mask].sum().item()
        count += int(mask.sum())
    expected = torch.tensor(nll / count).exp().float()
    torch.testing.assert_close(ours.compute(), theirs.compute(), rtol=1e-5, atol=0)
    torch.testing.assert_close(ours.compute(), expected, rtol=1e-5, atol=0)
