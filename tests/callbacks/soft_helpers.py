"""A plain peft LoRA LightningModule and hand-built round contexts for the SOFT/TSFA tests."""

from __future__ import annotations

import lightning as L
import torch
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader, TensorDataset

from lit_airlora.federated.aggregators import FedIT, identity_reduce
from lit_airlora.federated.upload import RoundContext, Upload
from lit_airlora.lora.layers import adapter_tensors, find_lora_layers


def peft_mlp(rank: int = 4, seed: int = 0) -> torch.nn.Module:
    """A two-layer MLP with random (non-zero) LoRA factors on both layers."""
    torch.manual_seed(seed)
    base = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.ReLU(), torch.nn.Linear(24, 8))
    config = LoraConfig(r=rank, target_modules=["0", "2"], init_lora_weights=False)
    return get_peft_model(base, config)


class PlainLoRAModule(L.LightningModule):
    """Any LightningModule holding peft LoRA (automatic optimisation, no federation)."""

    def __init__(self, rank: int = 4, learning_rate: float = 0.05):
        super().__init__()
        self.net = peft_mlp(rank)
        self.learning_rate = learning_rate

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(
            [p for p in self.parameters() if p.requires_grad], lr=self.learning_rate
        )

    def train_dataloader(self):
        x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
        return DataLoader(TensorDataset(x, 0.01 * x[:, :8]), batch_size=8)


def plain_trainer(max_epochs: int, callbacks) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
    )


def round_context(num_clients: int = 3, rank: int = 4, seed: int = 0) -> RoundContext:
    """A round of random updates around the factors of :func:`peft_mlp`."""
    global_adapter = adapter_tensors(find_lora_layers(peft_mlp(rank, seed)))
    g = torch.Generator().manual_seed(seed + 1)
    modules = sorted({name.rsplit(".", 1)[0] for name in global_adapter})
    uploads = [
        Upload(
            client_id=k,
            tensors={n: 0.1 * torch.randn(t.shape, generator=g) for n, t in global_adapter.items()},
            ranks=dict.fromkeys(modules, rank),
            weight=float(k + 1),
        )
        for k in range(num_clients)
    ]
    return RoundContext(
        round_idx=0,
        uploads=uploads,
        global_adapter=global_adapter,
        aggregator=FedIT(),
        ideal_aggregate=FedIT().aggregate(uploads, global_adapter),
        reduce=identity_reduce,
        generator_seed=1234,
        round_clients=list(range(num_clients)),
        client_weights={k: float(k + 1) for k in range(num_clients)},
    )
