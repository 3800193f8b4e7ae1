"""Tiny split-learning fits for tests (a 4-block Llama, 6 users, 2 edges)."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from lit_airlora.datamodules import IID, LocalFiles, SplitTextDataModule
from lit_airlora.lora.config import LoRASettings
from lit_airlora.split.module import SFLModule, SplitLLMModule
from tests.helpers import tiny_trainer, write_corpus


def split_datamodule(folder: Path, tokenizer, **overrides) -> SplitTextDataModule:
    kwargs = {
        "source": LocalFiles([str(write_corpus(folder))]),
        "partitioner": IID(num_clients=6),
        "num_edges": 2,
        "seq_len": 32,
        "batch_size": 2,
        "val_batch_size": 8,
        "local_steps": 2,
        "val_fraction": 0.2,
        "seed": 0,
    }
    kwargs.update(overrides)
    datamodule = SplitTextDataModule(**kwargs)
    datamodule.tokenizer_obj = tokenizer
    return datamodule


def split_module(model_dir: str, sfl: bool = False, **overrides):
    kwargs = {"model": model_dir, "lora": LoRASettings(max_rank=4), "learning_rate": 5e-3}
    if sfl:
        kwargs["cut_point"] = 1
    else:
        kwargs["cut_points"] = [1, 3]
    kwargs.update(overrides)
    return (SFLModule if sfl else SplitLLMModule)(**kwargs)


def split_fit(
    tmp_path: Path,
    model_dir: str,
    tokenizer,
    max_epochs: int = 2,
    sfl: bool = False,
    module_kwargs=None,
    data_kwargs=None,
    ckpt_path=None,
    callbacks=(),
    **trainer_kwargs,
):
    """Fit the tiny split model for ``max_epochs`` rounds; returns ``(trainer, module)``."""
    L.seed_everything(0, verbose=False)
    module = split_module(model_dir, sfl=sfl, **(module_kwargs or {}))
    data = {"num_edges": None, "clients_per_round": 6} if sfl else {}
    datamodule = split_datamodule(tmp_path, tokenizer, **{**data, **(data_kwargs or {})})
    trainer = tiny_trainer(tmp_path, max_epochs, callbacks, **trainer_kwargs)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, module
