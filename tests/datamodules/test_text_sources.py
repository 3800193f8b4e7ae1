"""Text sources: hub-style folders, local files of each format, the bundled BBC corpus."""

from __future__ import annotations

import csv
import json

import pytest

from lit_airlora.datamodules import BBCNews, HubDataset, LocalFiles
from lit_airlora.errors import ConfigError


def _write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


ROWS = [{"body": "first text", "topic": "a"}, {"body": "second text", "topic": "b"}]


def test_hub_dataset_reads_a_local_jsonl_folder(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "part.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    source = HubDataset(
        str(folder), text_column="body", label_column="topic", cache_dir=str(tmp_path / "c")
    )
    records = source.load()
    assert [r["text"] for r in records] == ["first text", "second text"]
    assert [r["label"] for r in records] == ["a", "b"]
    assert records[0]["topic"] == "a"  # every column is kept as a possible group key


def test_hub_dataset_reads_a_local_csv_folder(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    _write_csv(folder / "part.csv", ROWS)
    records = HubDataset(str(folder), text_column="body", cache_dir=str(tmp_path / "c")).load()
    assert [r["text"] for r in records] == ["first text", "second text"]
    assert "label" not in records[0]


def test_hub_dataset_missing_column_lists_available(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "part.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    source = HubDataset(str(folder), text_column="content", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"`text_column` \('content'\).*\['body', 'topic'\]"):
        source.load()


def test_local_txt_gives_one_record_per_paragraph(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("First line\nsame paragraph\n\n\n  \nSecond paragraph\n")
    records = LocalFiles([str(path)]).load()
    assert [r["text"] for r in records] == ["First line\nsame paragraph", "Second paragraph"]
    assert records[0]["file"] == str(path)


def test_local_json_jsonl_csv_and_folders(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(ROWS))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    _write_csv(tmp_path / "c.csv", ROWS)
    (tmp_path / "ignored.md").write_text("not read")
    records = LocalFiles([str(tmp_path)], text_column="body", label_column="topic").load()
    assert [r["text"] for r in records] == ["first text", "second text"] * 3
    assert [r["label"] for r in records] == ["a", "b"] * 3
    assert [r["file"].rsplit("/", 1)[1] for r in records[::2]] == ["a.json", "b.jsonl", "c.csv"]


def test_local_json_list_of_strings(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(["one", "two"]))
    assert [r["text"] for r in LocalFiles([str(tmp_path / "a.json")]).load()] == ["one", "two"]


def test_local_files_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        LocalFiles([str(tmp_path / "missing.txt")]).load()
    (tmp_path / "a.md").write_text("x")
    with pytest.raises(ValueError, match="unsupported extension"):
        LocalFiles([str(tmp_path / "a.md")]).load()
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "x"}))
    with pytest.raises(ValueError, match=r"`text_column` \('text'\).*\['body'\]"):
        LocalFiles([str(tmp_path / "b.jsonl")]).load()
    with pytest.raises(TypeError, match="list of paths"):
        LocalFiles(str(tmp_path))


def test_bbc_news_labels_follow_sorted_topics():
    records = BBCNews().load()
    assert len(records) == 2225
    topics = sorted({r["category"] for r in records})
    assert topics == ["business", "entertainment", "politics", "sports", "tech"]
    assert all(topics[r["label"]] == r["category"] for r in records)
    assert all(r["text"] for r in records)
