"""The data set-up cache: a second run with the same data settings loads the clients instead of
building them, gets the same tensors, and anything the result depends on changes the key."""

from __future__ import annotations

import json
import os

import pytest
import torch

from lit_airlora.datamodules import IID, FederatedTextDataModule, LocalFiles
from lit_airlora.datamodules.setup_cache import DATA_CACHE_ENV, load_or_build
from tests.tasks.classification_helpers import toy_datamodule


class CountingFiles(LocalFiles):
    """LocalFiles that counts how often the corpus is read."""

    loads = 0

    def load(self):
        CountingFiles.loads += 1
        return super().load()


@pytest.fixture
def corpus(tmp_path) -> CountingFiles:
    rows = [{"text": f"line {i} " + "alpha beta gamma " * (1 + i % 4)} for i in range(48)]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    CountingFiles.loads = 0
    return CountingFiles([str(path)])


def _set_up(source, tokenizer, **kwargs) -> FederatedTextDataModule:
    kwargs = {"seq_len": 16, "batch_size": 2, "clients_per_round": 2, **kwargs}
    datamodule = FederatedTextDataModule(source, IID(4), **kwargs)
    datamodule.tokenizer_obj = tokenizer
    datamodule.setup("fit")
    return datamodule


def test_second_setup_loads_the_same_clients_without_reading_the_corpus(corpus, tokenizer):
    first = _set_up(corpus, tokenizer)
    second = _set_up(corpus, tokenizer)
    assert CountingFiles.loads == 1  # the second set-up never read, partitioned or tokenised
    assert second.client_sizes == first.client_sizes
    assert second.client_names == first.client_names
    for a, b in [(first.train_set, second.train_set), (first.val_set, second.val_set)]:
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.num_tokens, b.num_tokens)
    assert len(os.listdir(os.environ[DATA_CACHE_ENV])) == 2  # the file and its lock


@pytest.mark.parametrize(
    "change", [{"seq_len": 8}, {"val_fraction": 0.3}, {"seed": 7}, {"setup_cache": False}]
)
def test_a_changed_setting_or_no_cache_sets_up_afresh(corpus, tokenizer, change):
    _set_up(corpus, tokenizer)
    _set_up(corpus, tokenizer, **change)
    assert CountingFiles.loads == 2


def test_an_edited_file_is_set_up_afresh(corpus, tokenizer):
    first = _set_up(corpus, tokenizer)
    path = corpus.paths[0]
    with open(path, "a") as f:
        f.write("\n" + json.dumps({"text": "a new line " * 20}))
    second = _set_up(corpus, tokenizer)
    assert CountingFiles.loads == 2 and sum(second.client_sizes) > sum(first.client_sizes)


def test_a_corrupt_cache_file_is_rebuilt(tmp_path):
    built = []

    def build():
        built.append(1)
        return {"x": torch.arange(3)}

    assert load_or_build("k", build, tmp_path)[1] is True
    (tmp_path / "k.pt").write_bytes(b"not a torch file")
    result, rebuilt = load_or_build("k", build, tmp_path)
    assert rebuilt and torch.equal(result["x"], torch.arange(3)) and len(built) == 2
    assert load_or_build("k", build, tmp_path)[1] is False and len(built) == 2


def test_classification_label_names_come_back_from_the_cache(tmp_path, tokenizer):
    first = toy_datamodule(tmp_path, tokenizer)
    first.setup("fit")
    source = CountingFiles(first.source.paths, label_column="topic")
    CountingFiles.loads = 0
    second = toy_datamodule(tmp_path / "unused", tokenizer, source=source)
    second.setup("fit")
    assert CountingFiles.loads == 0  # a cache hit: the corpus was not read
    assert second.label_names == first.label_names == ["fruit", "sea", "sky"]
    assert torch.equal(second.train_set.labels, first.train_set.labels)
