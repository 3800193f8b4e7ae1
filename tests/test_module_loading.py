"""Model handling: built in configure_model (or on first use), rebuilt from a checkpoint alone,
strict about every key but the frozen base, peft LoraConfig input, a second architecture."""

from __future__ import annotations

import functools
import shutil

import lightning as L
import pytest
import torch

from lit_airlora.errors import ConfigError
from lit_airlora.federated.aggregators import FFALoRA
from lit_airlora.module import FederatedLoRAModule
from tests.helpers import tiny_fit, tiny_module


def _save_unfitted(module, path) -> str:
    """A checkpoint of a module that never trained, written by Lightning as after a fit."""
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    module.configure_model()  # as Lightning does before it fits
    trainer.save_checkpoint(path)
    return str(path)


def _assert_same_adapter(loaded, module) -> None:
    assert loaded.global_adapter.keys() == module.global_adapter.keys()
    for name, value in module.global_adapter.items():
        torch.testing.assert_close(loaded.global_adapter[name], value, rtol=0, atol=0)
    live, expected = loaded.read_adapter(), module.read_adapter()
    for name, value in expected.items():
        torch.testing.assert_close(live[name], value, rtol=0, atol=0)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_llama_dir, tokenizer):
    """One round with non-default objects (aggregator, optimizer, client ranks)."""
    tmp_path = tmp_path_factory.mktemp("fitted")
    kwargs = {
        "aggregator": FFALoRA(),
        "client_ranks": [2, 4],
        "optimizer": functools.partial(torch.optim.SGD, lr=0.05, momentum=0.5),
    }
    trainer, module = tiny_fit(tmp_path, tiny_llama_dir, tokenizer, 1, module_kwargs=kwargs)
    return trainer.checkpoint_callback.best_model_path, module


def test_model_is_built_in_configure_model_or_on_first_use(tiny_llama_dir):
    module = tiny_module(tiny_llama_dir)
    assert "model" not in module._modules  # construction is cheap: nothing loaded yet
    assert module.tokenizer is not None and "model" not in module._modules
    assert len(module.global_adapter) == 8 and "model" in module._modules  # built on demand
    model = module.model
    module.configure_model()
    assert module.model is model  # idempotent


def test_load_from_checkpoint_rebuilds_the_module_alone(fitted):
    path, module = fitted
    hparams = torch.load(path, weights_only=True)["hyper_parameters"]
    assert hparams["lora"]["max_rank"] == 4
    assert hparams["aggregator"]["class_path"].endswith(".FFALoRA")
    loaded = FederatedLoRAModule.load_from_checkpoint(path)
    assert isinstance(loaded.aggregator, FFALoRA) and loaded.hparams.client_ranks == [2, 4]
    optimizer = loaded.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 0.05 and optimizer.defaults["momentum"] == 0.5
    assert not any(p.requires_grad for n, p in loaded.model.named_parameters() if "lora_A" in n)
    _assert_same_adapter(loaded, module)


@pytest.mark.parametrize("change", ["missing", "unexpected"])
def test_only_the_frozen_base_is_exempt_from_strict_loading(fitted, tmp_path, change):
    path = shutil.copy(fitted[0], tmp_path / "changed.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["state_dict"]
    assert state and all(".lora_" in k for k in state)  # the base is not saved, and not missed
    if change == "missing":
        state.pop(sorted(state)[0])
    else:
        state["model.base_model.model.lm_head.weight"] = torch.zeros(1)
    torch.save(checkpoint, path)
    with pytest.raises(ConfigError, match=f"adapter keys 1 {change}"):
        FederatedLoRAModule.load_from_checkpoint(path)


def test_a_classification_checkpoint_rebuilds_its_task_and_head(tmp_path, tiny_llama_dir):
    from lit_airlora.tasks import SequenceClassification

    module = tiny_module(tiny_llama_dir, task=SequenceClassification(num_labels=3))
    with torch.no_grad():
        module.head_parameters["score.weight"].normal_()  # a trained head, not a fresh one
    module.global_adapter = module.read_adapter()
    loaded = FederatedLoRAModule.load_from_checkpoint(_save_unfitted(module, tmp_path / "c.ckpt"))
    assert isinstance(loaded.task, SequenceClassification) and loaded.task.num_labels == 3
    assert list(loaded.head_parameters) == ["score.weight"]
    _assert_same_adapter(loaded, module)


def test_a_zeroth_order_checkpoint_rebuilds_its_mode(tmp_path, tiny_llama_dir):
    from lit_airlora.zeroth_order import ZerothOrder

    zo = ZerothOrder(perturbation_scale=2e-3, num_perturbations=3, parameters="full")
    module = tiny_module(tiny_llama_dir, zeroth_order=zo)
    loaded = FederatedLoRAModule.load_from_checkpoint(_save_unfitted(module, tmp_path / "z.ckpt"))
    assert (loaded.zeroth_order.mu, loaded.zeroth_order.num_perturbations) == (2e-3, 3)
    assert loaded.zeroth_order.params and len(loaded.zeroth_order.params) == len(
        list(loaded.model.parameters())
    )  # bound to the rebuilt model, every weight ("full")


def test_a_split_checkpoint_rebuilds_its_tiers_and_links(tmp_path, tiny_llama4_dir):
    from lit_airlora.channel.quantize import Float16
    from lit_airlora.split.links import QuantizedLink
    from lit_airlora.split.module import SplitLLMModule
    from tests.split.helpers import split_module

    module = split_module(tiny_llama4_dir, uplink=QuantizedLink(Float16(), rate_bps=1e6))
    assert "model" not in module._modules and [s.end for s in module.specs] == [1, 3, 4]
    loaded = SplitLLMModule.load_from_checkpoint(_save_unfitted(module, tmp_path / "s.ckpt"))
    uplink = loaded.hops[0].forward
    assert isinstance(uplink, QuantizedLink) and uplink.rate_bps == 1e6
    assert isinstance(uplink.quantizer, Float16)
    assert loaded.tier_modules == module.tier_modules
    _assert_same_adapter(loaded, module)


def test_an_object_that_cannot_be_stored_is_named_with_the_fix(tiny_llama_dir):
    def sgd(params):
        return torch.optim.SGD(params, lr=0.1)

    with pytest.warns(UserWarning, match=r"`optimizer` cannot be stored .* optimizer=\.\.\."):
        module = tiny_module(tiny_llama_dir, optimizer=sgd)
    assert "optimizer" not in module.hparams and module.optimizer_factory is sgd


def _exported_logits_match(module, base_dir) -> None:
    """The exported folder, loaded by peft on the plain base model, gives the module's logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.randint(3, 250, (2, 12), generator=torch.Generator().manual_seed(0))
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    exported = PeftModel.from_pretrained(base, module.exported_adapter_dir).eval()
    module.model.eval()
    with torch.no_grad():
        ours, theirs = module.model(input_ids=ids).logits, exported(input_ids=ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_a_peft_lora_config_is_used_as_given(tmp_path, tiny_llama_dir, tokenizer):
    from peft import LoraConfig

    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        exclude_modules=["model.layers.1.self_attn.v_proj"],
        use_rslora=True,
    )
    kwargs = {"lora": config, "adapter_name": "fed"}
    trainer, module = tiny_fit(tmp_path, tiny_llama_dir, tokenizer, 1, module_kwargs=kwargs)
    assert "model.layers.1.self_attn.v_proj" not in module.lora_layers
    assert len(module.lora_layers) == 3 and module.model.peft_config["fed"].use_rslora
    module.set_ranks(2)  # rsLoRA's alpha / sqrt(r) at the new rank, as peft rebuilds the export
    module.export_adapter(tmp_path / "adapter")
    _exported_logits_match(module, tiny_llama_dir)
    loaded = FederatedLoRAModule.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    assert loaded.peft_config.use_rslora and loaded.adapter_name == "fed"
    assert set(loaded.lora_layers) == set(module.lora_layers)


def test_gpt2_conv1d_targets_and_biases_train_federate_and_export(
    tmp_path, tiny_gpt2_dir, tokenizer
):
    from lit_airlora.lora.config import LoRASettings

    lora = LoRASettings(target_modules=["c_attn"], max_rank=4, bias="lora_only")
    kwargs = {"lora": lora, "learning_rate": 1e-2}
    _, module = tiny_fit(tmp_path, tiny_gpt2_dir, tokenizer, 1, module_kwargs=kwargs)
    attn = [f"transformer.h.{i}.attn.c_attn" for i in range(2)]
    assert set(module.lora_layers) == set(attn)
    assert module.lora_layers[attn[0]].lora_B.shape == (192, 4)  # Conv1D 64 -> 3 * 64
    biases = {f"{name}.base_layer.bias" for name in attn}
    assert set(module.head_parameters) == biases  # federated whole, like a head
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    trained_bias = module.global_adapter[f"{attn[0]}.base_layer.bias"]
    assert not torch.equal(trained_bias, base.transformer.h[0].attn.c_attn.bias.detach())
    assert module.global_adapter[f"{attn[0]}.lora_B"].abs().sum() > 0
    _exported_logits_match(module, tiny_gpt2_dir)


def test_a_peft_config_from_yaml_trains_and_its_checkpoint_loads_alone(tmp_path, tiny_llama_dir):
    import json

    from lit_airlora.cli import main
    from tests.test_cli import _tiny_config

    lora = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    lora["use_rslora"] = True
    main(["fit", "--config", str(_tiny_config(tmp_path, tiny_llama_dir, lora=lora))])
    version = tmp_path / "runs" / "tiny" / "version_0"
    exported = json.loads((version / "adapter" / "adapter_config.json").read_text())
    assert exported["use_rslora"] and exported["r"] == 4 and exported["lora_alpha"] == 8
    path = next(version.glob("checkpoints/last.ckpt"))
    loaded = FederatedLoRAModule.load_from_checkpoint(path)  # through LightningCLI's instantiator
    assert loaded.peft_config.use_rslora and loaded.lora_settings.max_rank == 4


def test_a_checkpoint_of_another_module_is_refused_in_one_line(tiny_llama_dir):
    module = tiny_module(tiny_llama_dir)
    with pytest.raises(ConfigError, match=r"`--ckpt_path` \('other.ckpt'\) was not written by"):
        module.check_checkpoint({"state_dict": {}, "epoch": 3}, "other.ckpt")
    assert "model" not in module._modules  # checking a checkpoint loads no model


def test_the_initial_adapter_does_not_depend_on_when_the_model_is_built(tiny_llama_dir):
    torch.manual_seed(0)
    early = tiny_module(tiny_llama_dir)
    early.configure_model()
    torch.manual_seed(0)
    late = tiny_module(tiny_llama_dir)
    torch.rand(100)  # what runs before fit (callbacks, DDP's re-seeding) moves the stream
    stream = torch.get_rng_state()
    late.configure_model()
    assert torch.equal(torch.get_rng_state(), stream)  # and the build leaves it alone
    _assert_same_adapter(late, early)
