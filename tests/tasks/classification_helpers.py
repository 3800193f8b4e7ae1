"""A separable toy classification set and tiny classification fits."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch

from lit_airlora.datamodules import IID, FederatedClassificationDataModule, LocalFiles
from lit_airlora.tasks import SequenceClassification
from tests.helpers import tiny_module, tiny_trainer

#: Each class draws its words from its own vocabulary: a linearly separable toy set.
CLASS_WORDS = {
    "fruit": "apple cherry melon peach plum grape".split(),
    "sea": "wave ocean tide shore coral reef".split(),
    "sky": "cloud storm wind rain thunder sun".split(),
}


def write_toy_set(folder: Path, num_records: int = 96, seed: int = 0) -> Path:
    """A jsonl file of short texts labelled by name (``"fruit"``, ``"sea"``, ``"sky"``)."""
    g = torch.Generator().manual_seed(seed)
    names = sorted(CLASS_WORDS)
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "toy.jsonl"
    with path.open("w") as f:
        for i in range(num_records):
            name = names[i % len(names)]
            idx = torch.randint(0, len(CLASS_WORDS[name]), (5,), generator=g).tolist()
            text = " ".join(CLASS_WORDS[name][j] for j in idx)
            f.write(json.dumps({"text": text, "topic": name}) + "\n")
    return path


def toy_datamodule(
    folder: Path, tokenizer, num_records: int = 96, **overrides
) -> FederatedClassificationDataModule:
    kwargs = {
        "source": LocalFiles([str(write_toy_set(folder, num_records))], label_column="topic"),
        "partitioner": IID(num_clients=4),
        "seq_len": 48,
        "batch_size": 8,
        "val_batch_size": 32,
        "clients_per_round": 2,
        "local_steps": 3,
        "val_fraction": 0.25,
        "seed": 0,
    }
    kwargs.update(overrides)
    datamodule = FederatedClassificationDataModule(**kwargs)
    datamodule.tokenizer_obj = tokenizer
    return datamodule


def classification_fit(
    tmp_path: Path,
    model_dir: str,
    tokenizer,
    max_epochs: int = 3,
    num_labels: int = 3,
    module_kwargs=None,
    data_kwargs=None,
    ckpt_path=None,
    callbacks=(),
    num_records: int = 96,
    **trainer_kwargs,
):
    """Fit the tiny classifier for ``max_epochs`` rounds; returns ``(trainer, module)``."""
    L.seed_everything(0, verbose=False)
    kwargs = {"task": SequenceClassification(num_labels=num_labels), "learning_rate": 1e-2}
    module = tiny_module(model_dir, **{**kwargs, **(module_kwargs or {})})
    datamodule = toy_datamodule(tmp_path, tokenizer, num_records, **(data_kwargs or {}))
    trainer = tiny_trainer(tmp_path, max_epochs, callbacks, **trainer_kwargs)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, module
