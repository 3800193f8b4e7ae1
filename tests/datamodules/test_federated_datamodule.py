"""FederatedTextDataModule: setup, loaders, tokenizer resolution, Lightning integration, errors."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch

from lit_airlora.datamodules import (
    IID,
    FederatedTextDataModule,
    LocalFiles,
    Natural,
    ShakespeareCorpus,
)


@pytest.fixture
def corpus(tmp_path) -> LocalFiles:
    rows = [
        {
            "text": f"sample {i} " + "lorem ipsum dolor " * (1 + i % 3),
            "label": i % 4,
            "role": f"r{i % 5}",
        }
        for i in range(60)
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return LocalFiles([str(path)], label_column="label")


def _dm(source, partitioner, tokenizer, **kwargs) -> FederatedTextDataModule:
    dm = FederatedTextDataModule(source, partitioner, **kwargs)
    dm.tokenizer_obj = tokenizer
    return dm


def test_setup_exposes_clients_and_batches(corpus, tokenizer, caplog):
    dm = _dm(corpus, IID(6), tokenizer, seq_len=16, batch_size=3, clients_per_round=4)
    with caplog.at_level(logging.INFO, logger="lit_airlora.datamodules.federated"):
        dm.setup("fit")
    assert dm.num_clients == 6 and len(dm.client_sizes) == 6
    assert dm.schedule.clients_per_round == 4
    assert "client 0 (client_0): 10 records" in caplog.text and "labels {" in caplog.text
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(2)
    batches = list(loader)
    assert len(batches) == 4 * 2  # clients_per_round * local_steps
    ids = [int(b["client_id"][0]) for b in batches]
    assert sorted(set(ids)) == dm.schedule.clients(2)
    for batch in batches:
        assert batch["input_ids"].shape == (3, 16) and batch["labels"].shape == (3, 16)
        assert batch["client_id"].unique().numel() == 1  # a batch belongs to one client
        assert torch.all(batch["client_weight"] == dm.client_sizes[int(batch["client_id"][0])])


def test_validation_pools_every_client_unsharded(corpus, tokenizer):
    dm = _dm(corpus, IID(6), tokenizer, seq_len=16, val_batch_size=5, val_fraction=0.2)
    dm.trainer = SimpleNamespace(global_rank=1, world_size=2, lightning_module=None)
    dm.setup("fit")
    val = list(dm.val_dataloader())
    client_ids = torch.cat([b["client_id"] for b in val])
    assert set(client_ids.tolist()) == set(range(6))  # rank 1 sees every client's blocks
    assert all(len(b["client_id"]) <= 5 for b in val)
    total = sum(dm.client_sizes) + len(client_ids)
    assert len(client_ids) >= 6 and len(client_ids) < 0.35 * total


def test_tokenizer_from_the_lightning_module_and_from_a_folder(corpus, tokenizer, tmp_path):
    dm = FederatedTextDataModule(corpus, IID(2), clients_per_round=2, seq_len=16)
    dm.trainer = SimpleNamespace(
        global_rank=0, world_size=1, lightning_module=SimpleNamespace(tokenizer=tokenizer)
    )
    dm.setup("fit")
    tokenizer.save_pretrained(tmp_path / "tok")
    dm2 = FederatedTextDataModule(
        corpus, IID(2), tokenizer=str(tmp_path / "tok"), clients_per_round=2, seq_len=16
    )
    dm2.setup("fit")
    assert torch.equal(dm.train_set.input_ids, dm2.train_set.input_ids)


def test_missing_tokenizer_is_explained(corpus):
    dm = FederatedTextDataModule(corpus, IID(2), clients_per_round=2)
    with pytest.raises(ValueError, match="`tokenizer` is None"):
        dm.setup("fit")


def test_shakespeare_natural_roles(tokenizer):
    dm = _dm(
        ShakespeareCorpus(plays=["hamlet"]),
        Natural("role", 3),
        tokenizer,
        seq_len=64,
        clients_per_round=2,
    )
    dm.setup("fit")
    assert dm.client_names == ["hamlet/HAM", "hamlet/HOR", "hamlet/KING"]
    assert dm.client_sizes[0] > dm.client_sizes[1]


def test_max_samples_per_client_caps_blocks(corpus, tokenizer):
    dm = _dm(corpus, IID(2), tokenizer, seq_len=8, clients_per_round=2, max_samples_per_client=5)
    dm.setup("fit")
    assert dm.client_sizes == [4, 4]  # 5 blocks, 1 held out for validation
    assert len(dm.val_set) == 2


class _Recorder(pl.LightningModule):
    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).extend(batch["client_id"].tolist())
        return (self.weight * batch["attention_mask"].float().mean()).sum()

    def validation_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_trainer_runs_one_round_per_epoch(corpus, tokenizer):
    dm = FederatedTextDataModule(
        corpus, IID(5), seq_len=16, batch_size=2, clients_per_round=3, local_steps=2
    )
    module = _Recorder(tokenizer)
    trainer = pl.Trainer(
        max_epochs=3,
        use_distributed_sampler=False,
        accelerator="cpu",
        devices=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    for epoch in range(3):
        expected = [c for c in dm.schedule.clients(epoch) for _ in range(2 * 2)]
        assert module.seen[epoch] == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"clients_per_round": 5},
            r"`clients_per_round` \(5\) must be <= the number of clients \(4\)",
        ),
        ({"clients_per_round": 0}, r"`clients_per_round` \(0\) must be >= 1"),
        ({"seq_len": 1}, r"`seq_len` \(1\) must be >= 2"),
        ({"batch_size": 0}, r"`batch_size` \(0\) must be >= 1"),
        ({"val_batch_size": -1}, r"`val_batch_size` \(-1\) must be >= 1"),
        ({"local_steps": 0}, r"`local_steps` \(0\) must be >= 1"),
        ({"val_fraction": 1.0}, r"`val_fraction` \(1.0\) must be in \[0, 1\)"),
        ({"val_fraction": -0.1}, r"`val_fraction` \(-0.1\) must be in \[0, 1\)"),
        ({"min_samples_per_client": 0}, r"`min_samples_per_client` \(0\) must be >= 1"),
        ({"max_samples_per_client": 0}, r"`max_samples_per_client` \(0\) must be >= 1"),
    ],
)
def test_bad_arguments_fail_in_init(corpus, kwargs, message):
    with pytest.raises(ValueError, match=message):
        FederatedTextDataModule(corpus, IID(4), **{"clients_per_round": 2, **kwargs})


def test_bad_types_fail_in_init(corpus):
    with pytest.raises(TypeError, match="`source`"):
        FederatedTextDataModule("corpus.txt", IID(4))
    with pytest.raises(TypeError, match="`partitioner`"):
        FederatedTextDataModule(corpus, "iid")


def test_data_dependent_errors_fail_in_setup(corpus, tokenizer):
    dm = _dm(corpus, Natural("role"), tokenizer, clients_per_round=6)
    with pytest.raises(
        ValueError, match=r"`clients_per_round` \(6\) must be <= the number of clients \(5\)"
    ):
        dm.setup("fit")
    dm = _dm(corpus, IID(40), tokenizer, clients_per_round=2, min_samples_per_client=2)
    with pytest.raises(ValueError, match=r"Client \d+ holds 1 record\(s\)"):
        dm.setup("fit")


def test_loaders_before_setup_are_explained(corpus):
    with pytest.raises(RuntimeError, match="setup"):
        FederatedTextDataModule(corpus, IID(4), clients_per_round=2).val_dataloader()
