"""Tiny end-to-end runs for tests: a random Llama, a byte tokenizer and a small local corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader, TensorDataset

from lit_airlora.datamodules import IID, FederatedTextDataModule, LocalFiles
from lit_airlora.lora.config import LoRASettings
from lit_airlora.lora.layers import adapter_tensors, find_lora_layers
from lit_airlora.module import FederatedLoRAModule

#: The repository root, put on ``PYTHONPATH`` of scripts launched in their own process.
REPO_ROOT = Path(__file__).resolve().parents[1]

WORDS = "the wind over the air carries low rank updates to a patient server".split()


def write_corpus(folder: Path, num_records: int = 64, seed: int = 0) -> Path:
    """A jsonl file of short pseudo-sentences (enough for 8 clients of packed blocks)."""
    g = torch.Generator().manual_seed(seed)
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "corpus.jsonl"
    with path.open("w") as f:
        for i in range(num_records):
            idx = torch.randint(0, len(WORDS), (24,), generator=g).tolist()
            f.write(json.dumps({"text": " ".join(WORDS[j] for j in idx), "label": i % 3}) + "\n")
    return path


def tiny_datamodule(folder: Path, tokenizer, **overrides) -> FederatedTextDataModule:
    kwargs = {
        "source": LocalFiles([str(write_corpus(folder))]),
        "partitioner": IID(num_clients=6),
        "seq_len": 32,
        "batch_size": 2,
        "val_batch_size": 8,
        "clients_per_round": 3,
        "local_steps": 2,
        "val_fraction": 0.2,
        "seed": 0,
    }
    kwargs.update(overrides)
    datamodule = FederatedTextDataModule(**kwargs)
    datamodule.tokenizer_obj = tokenizer
    return datamodule


def tiny_module(model_dir: str, **overrides) -> FederatedLoRAModule:
    kwargs = {"model": model_dir, "lora": LoRASettings(max_rank=4), "learning_rate": 5e-3}
    kwargs.update(overrides)
    return FederatedLoRAModule(**kwargs)


def tiny_trainer(root: Path, max_epochs: int = 2, callbacks=(), **overrides) -> L.Trainer:
    kwargs = {
        "max_epochs": max_epochs,
        "accelerator": "cpu",
        "devices": 1,
        "use_distributed_sampler": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": str(root),
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "callbacks": list(callbacks),
    }
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def tiny_fit(
    tmp_path: Path,
    model_dir: str,
    tokenizer,
    max_epochs: int = 2,
    callbacks=(),
    module_kwargs=None,
    data_kwargs=None,
    ckpt_path=None,
    **trainer_kwargs,
):
    """Fit the tiny model for ``max_epochs`` rounds; returns ``(trainer, module)``."""
    L.seed_everything(0, verbose=False)
    module = tiny_module(model_dir, **(module_kwargs or {}))
    datamodule = tiny_datamodule(tmp_path, tokenizer, **(data_kwargs or {}))
    trainer = tiny_trainer(tmp_path, max_epochs, callbacks, **trainer_kwargs)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, module


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


def fit_plain(tmp_path: Path, callbacks, max_epochs: int = 2, **trainer_kwargs):
    """Fit a :class:`PlainLoRAModule` with ``callbacks``; returns ``(trainer, module)``."""
    module = PlainLoRAModule()
    kwargs = {
        "max_epochs": max_epochs,
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "callbacks": list(callbacks),
        "default_root_dir": tmp_path,
    }
    trainer = L.Trainer(**{**kwargs, **trainer_kwargs})
    trainer.fit(module)
    return trainer, module


def launch_script(script: Path, *args: object, timeout_s: float = 600) -> None:
    """Run ``script`` with ``args`` in a fresh Python process, one thread per process.

    Lightning's DDP starts its other ranks by re-running the command line, so DDP tests run a
    small script instead of forking pytest. A failure shows the script's stderr; a hang fails
    after ``timeout_s`` instead of blocking the suite.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(script), *map(str, args)]
    done = subprocess.run(command, env=env, timeout=timeout_s, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{script.name} {args} failed:\n{done.stderr[-3000:]}")
