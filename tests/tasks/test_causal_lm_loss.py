"""The causal-LM loss over chunks of positions equals Hugging Face's next-token loss."""

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
