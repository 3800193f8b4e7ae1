"""LoRA settings: bad values fail with messages that name the argument."""

import pytest
from transformers import AutoModelForCausalLM

from lit_airlora.lora.config import LoRASettings, wrap_lora


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_rank": 0}, r"`max_rank` \(0\) must be a positive integer"),
        ({"max_rank": 4, "rank": 5}, r"`rank` \(5\) must be in \[1, max_rank=4\]"),
        ({"dropout": 1.5}, r"`dropout` \(1.5\)"),
        ({"target_modules": []}, "`target_modules` is empty"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoRASettings(**kwargs)


def test_unknown_target_lists_the_model_modules(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with pytest.raises(ValueError, match=r"\['query'\] match no linear module.*q_proj"):
        wrap_lora(model, LoRASettings(target_modules=["query"]))


def test_rank_wider_than_layer_is_rejected(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with pytest.raises(ValueError, match=r"`max_rank` \(64\) exceeds the width of .*k_proj"):
        wrap_lora(model, LoRASettings(target_modules=["k_proj"], max_rank=64))
