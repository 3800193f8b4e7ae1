"""peft's target-matching rule on names alone: the pre-flight and peft take the same decision."""

from __future__ import annotations

import pytest
from peft import LoraConfig
from peft.tuners.tuners_utils import check_target_module_exists
from transformers import AutoModelForCausalLM

from lit_airlora.lora.matching import check_layers, is_target, rule_of

# LoraConfig fields: lists (exact names, '.name' suffixes), regexes, exclusions, layer indices.
RULES = [
    {"target_modules": ["q_proj", "v_proj"]},
    {"target_modules": ["self_attn.q_proj", "mlp.up_proj"]},
    {"target_modules": ["model.layers.1.self_attn.k_proj", "lm_head"]},
    {"target_modules": ["c_attn", "c_fc"]},
    {"target_modules": ["attn.c_proj"]},
    {"target_modules": ["proj"]},  # a suffix of names, not of a '.name': matches nothing
    {"target_modules": r".*\.(q|v)_proj"},
    {"target_modules": r"model\.layers\.0\..*"},
    {"target_modules": r"transformer\.h\.1\.mlp\.c_.*"},
    {"target_modules": ["q_proj", "k_proj", "o_proj"], "exclude_modules": ["k_proj"]},
    {"target_modules": ["q_proj", "c_attn"], "exclude_modules": r".*\.1\..*"},
    {"target_modules": ["q_proj", "c_attn"], "layers_to_transform": [1]},
    {"target_modules": ["v_proj", "c_fc"], "layers_to_transform": 0, "layers_pattern": "layers"},
    {"target_modules": ["v_proj", "c_fc"], "layers_to_transform": [0], "layers_pattern": "h"},
    {"target_modules": ["q_proj", "score", "c_attn"], "modules_to_save": ["score"]},
]


@pytest.fixture(scope="module")
def module_names(tiny_llama_dir, tiny_gpt2_dir) -> dict[str, list[str]]:
    names = {}
    for family, folder in (("llama", tiny_llama_dir), ("gpt2", tiny_gpt2_dir)):
        model = AutoModelForCausalLM.from_pretrained(folder)
        names[family] = [name for name, _ in model.named_modules() if name]
    return names


@pytest.mark.parametrize("fields", RULES, ids=lambda f: repr(sorted(f.items()))[:60])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_matching_agrees_with_peft_on_every_module(module_names, family, fields):
    config = LoraConfig(r=4, **fields)
    rule = rule_of(config)
    ours = {k for k in module_names[family] if is_target(k, **rule)}
    peft = {k for k in module_names[family] if check_target_module_exists(config, k)}
    assert ours == peft


def test_rule_of_yaml_settings_excludes_the_classification_head():
    rule = rule_of({"target_modules": ["q_proj", "score"]}, seq_cls=True)
    assert is_target("model.layers.0.self_attn.q_proj", **rule)
    assert not is_target("score", **rule)


def test_check_layers_names_the_unmatched_targets_and_the_narrow_layer():
    layers = {
        "model.layers.0.self_attn.q_proj": (64, 64),
        "model.layers.0.self_attn.k_proj": (64, 32),
    }
    with pytest.raises(ValueError, match=r"\['nope'\] match no linear layer.*'k_proj', 'q_proj'"):
        check_layers(layers, {"target_modules": ["q_proj", "nope"]}, 8)
    with pytest.raises(ValueError, match=r"`lora.max_rank` \(40\) exceeds .*k_proj.*<= 32"):
        check_layers(layers, {"target_modules": ["k_proj"]}, 40)
    check_layers(layers, {"target_modules": ["q_proj"]}, 40)  # k_proj is not adapted: no limit
