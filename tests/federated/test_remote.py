"""Remote-link mode: stage callbacks in a plain LightningModule holding a peft LoRA model."""

import lightning as L
import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader, TensorDataset

from lit_airlora.callbacks.remote_link import RemoteLinkMixin
from lit_airlora.lora.layers import adapter_tensors, find_lora_layers


class PlainLoRAModule(L.LightningModule):
    """A BoringModel-style module: one peft-wrapped MLP, automatic optimisation."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        base = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        self.net = get_peft_model(base, LoraConfig(r=4, target_modules=["0", "2"]))
        self.seen_in_validation = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        self.seen_in_validation.append(adapter_tensors(find_lora_layers(self)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)

    val_dataloader = train_dataloader


class AddOne(RemoteLinkMixin):
    """A stand-in channel: the server receives every value plus one."""

    def __init__(self, remote_mode):
        self.remote_mode = remote_mode

    def on_upload_transmit(self, trainer, pl_module, ctx):
        ctx.aggregate = {n: t + 1.0 for n, t in ctx.uploads[0].tensors.items()}


@pytest.mark.parametrize("mode", ["replace", "shadow"])
def test_received_adapter_replaces_or_shadows_the_trained_one(tmp_path, mode):
    module = PlainLoRAModule()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        callbacks=[AddOne(mode)],
        default_root_dir=tmp_path,
    )
    trainer.fit(module)
    final = adapter_tensors(find_lora_layers(module))
    validated = module.seen_in_validation[-1]
    for name, value in final.items():
        if mode == "replace":  # the model now holds the received adapter, and validated it
            torch.testing.assert_close(validated[name], value)
        else:  # validation saw trained + 1; the model kept the trained adapter
            torch.testing.assert_close(validated[name], value + 1.0)
