"""Classification data: labels encoded with their names, examples per client, and bad labels
refused with one clear message before training."""

import json

import pytest
import torch

from lit_airlora.datamodules import Dirichlet, LocalFiles
from lit_airlora.datamodules.labels import encode_labels
from lit_airlora.tasks import SequenceClassification
from tests.tasks.classification_helpers import toy_datamodule


def _write(tmp_path, rows, name="rows.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_label_encoding_keeps_ids_and_names():
    named = [{"label": 1, "category": "sport"}, {"label": 0, "category": "business"}]
    assert encode_labels(named) == ([1, 0], ["business", "sport"])
    assert encode_labels([{"label": "10"}, {"label": "2"}]) == (
        [10, 2],
        [str(i) for i in range(11)],
    )
    assert encode_labels([{"label": "pos"}, {"label": "neg"}]) == ([1, 0], ["neg", "pos"])


def test_examples_carry_labels_and_clients(tmp_path, tokenizer):
    datamodule = toy_datamodule(tmp_path, tokenizer, partitioner=Dirichlet(4, alpha=0.5))
    datamodule.setup("fit")
    assert datamodule.label_names == ["fruit", "sea", "sky"]
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input_ids"].shape == (8, 48) and batch["labels"].shape == (8,)
    assert batch["client_id"].unique().numel() == 1
    # Padding is on the right and masked; the last real token is EOS (the head reads it).
    lengths = batch["attention_mask"].sum(1)
    assert torch.equal(batch["input_ids"][torch.arange(8), lengths - 1], torch.ones(8).long())
    val_labels = torch.cat([b["labels"] for b in datamodule.val_dataloader()])
    assert val_labels.unique().numel() == 3  # held out at random, not the last class only
    assert sum(datamodule.client_sizes) + len(val_labels) == 96


@pytest.mark.parametrize(
    ("rows", "source_kwargs", "message"),
    [
        ([{"text": "a b"}] * 8, {}, r"record 0 has none .*Set `label_column`"),
        ([{"text": "a b", "y": "x"}] * 8, {"label_column": "y"}, r"single class \('x'\)"),
        ([{"text": "a", "y": -1}, {"text": "b", "y": 0}] * 4, {"label_column": "y"}, r">= 0"),
    ],
)
def test_bad_labels_fail_at_setup(tmp_path, tokenizer, rows, source_kwargs, message):
    source = LocalFiles([_write(tmp_path, rows)], **source_kwargs)
    datamodule = toy_datamodule(tmp_path, tokenizer, source=source)
    with pytest.raises(ValueError, match=message):
        datamodule.setup("fit")


def test_more_classes_than_the_head_are_refused(tmp_path, tokenizer):
    datamodule = toy_datamodule(tmp_path, tokenizer)
    datamodule.setup("fit")
    with pytest.raises(ValueError, match=r"3 classes .* `num_labels` \(2\) .* >= 3"):
        SequenceClassification(num_labels=2).check_data(datamodule)
    with pytest.raises(ValueError, match=r"`num_labels` \(1\) must be an int >= 2"):
        SequenceClassification(num_labels=1)
