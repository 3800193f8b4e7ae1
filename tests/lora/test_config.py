"""LoRA settings: bad values fail with messages that name the argument."""

import pytest
from peft import LoraConfig
from transformers import AutoModelForCausalLM

from lit_airlora.lora.config import LoRASettings, wrap_lora
from lit_airlora.lora.inputs import lora_from_any, lora_hparams


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
    with pytest.raises(ValueError, match=r"\['query'\] match no linear layer.*q_proj"):
        wrap_lora(model, LoRASettings(target_modules=["query"]))


def test_rank_wider_than_layer_is_rejected(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with pytest.raises(ValueError, match=r"max_rank` \(64\) exceeds the width of .*k_proj"):
        wrap_lora(model, LoRASettings(target_modules=["k_proj"], max_rank=64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": float("nan")}, r"`alpha` \(nan\) must be a finite number > 0"),
        ({"alpha": 0.0}, r"`alpha` \(0.0\) must be a finite number > 0"),
        ({"bias": "some"}, r"`bias` \('some'\) must be one of"),
    ],
    ids=["nan_alpha", "zero_alpha", "bias"],
)
def test_meaningless_alpha_and_bias_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoRASettings(**kwargs)


@pytest.mark.parametrize(
    ("lora", "message"),
    [
        (LoraConfig(r=4, target_modules=["q_proj"], use_dora=True), r"`lora.use_dora` \(True\)"),
        (LoraConfig(r=4, target_modules=["q_proj"], rank_pattern={"q": 2}), "`lora.rank_pattern`"),
        (LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights="pissa"), "base weights"),
        (LoraConfig(r=4, target_modules="q_proj"), r"`lora.target_modules` \('q_proj'\)"),
        ({"max_rnak": 4}, r"`lora` has unknown settings \['max_rnak'\]"),
    ],
    ids=["dora", "rank_pattern", "pissa", "regex_targets", "typo"],
)
def test_what_rank_masks_cannot_do_is_refused(lora, message):
    with pytest.raises(ValueError, match=message):
        lora_from_any(lora)


def test_a_peft_config_round_trips_through_checkpoint_builtins():
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_rslora=True)
    settings, given = lora_from_any(config)
    stored = lora_hparams(settings, given)
    assert stored["peft_type"] == "LORA" and stored["target_modules"] == ["q_proj", "v_proj"]
    again, rebuilt = lora_from_any(stored)
    assert again == settings and rebuilt.use_rslora and rebuilt.lora_alpha == 8
