"""Sequence classification: a tiny decoder learns a separable toy set, federated with its head;
the exported adapter plus head reloads with peft; resume is exact."""

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from tests.tasks.classification_helpers import classification_fit


def _flat(adapter):
    return torch.cat([adapter[k].flatten() for k in sorted(adapter)])


def test_tiny_classifier_learns_the_toy_set_and_exports(tmp_path, tiny_llama_dir, tokenizer):
    trainer, module = classification_fit(tmp_path, tiny_llama_dir, tokenizer, max_epochs=3)
    # Round 0 is chance level (3 classes); seed 0 reaches 1.0 by round 3, 0.9 leaves a margin.
    assert len(module.history) == 4 and module.history[0] < 0.6
    assert module.history[-1] >= 0.9 and trainer.logged_metrics["val/f1_macro"] >= 0.9
    assert {"val/f1/fruit", "val/f1/sea", "val/accuracy_round0"} <= set(trainer.logged_metrics)
    # The head is federated: uploaded whole beside the rank-4 q/v factors, counted in the ledger.
    assert set(module.head_parameters) == {"score.weight"}
    lora_values = 2 * 4 * ((64 + 64) + (64 + 32))
    per_client = trainer.logged_metrics["comm/uplink_bits_per_client"]
    assert per_client == 32 * (lora_values + 3 * 64)
    base = AutoModelForSequenceClassification.from_pretrained(
        tiny_llama_dir, num_labels=3, pad_token_id=tokenizer.pad_token_id
    )
    exported = PeftModel.from_pretrained(base, module.exported_adapter_dir).eval()
    ids = tokenizer(["melon plum", "storm rain sun"], padding=True, return_tensors="pt")
    module.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(**ids).logits, module.model(**ids).logits)


def test_resume_after_a_round_matches_an_uninterrupted_run(tmp_path, tiny_llama_dir, tokenizer):
    _, full = classification_fit(tmp_path / "full", tiny_llama_dir, tokenizer, max_epochs=2)
    trainer, _ = classification_fit(tmp_path / "cut", tiny_llama_dir, tokenizer, max_epochs=1)
    ckpt = trainer.checkpoint_callback.best_model_path
    _, resumed = classification_fit(
        tmp_path / "cut", tiny_llama_dir, tokenizer, max_epochs=2, ckpt_path=ckpt
    )
    assert "score.weight" in resumed.global_adapter
    torch.testing.assert_close(_flat(resumed.global_adapter), _flat(full.global_adapter))
    assert resumed.history == full.history
