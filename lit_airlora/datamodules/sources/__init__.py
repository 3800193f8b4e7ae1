"""Text sources: where a federated corpus comes from (chosen in YAML by ``class_path``)."""

from lit_airlora.datamodules.sources.base import Record, TextSource
from lit_airlora.datamodules.sources.bbc_news import BBCNews
from lit_airlora.datamodules.sources.hub import HubDataset
from lit_airlora.datamodules.sources.local_files import LocalFiles
from lit_airlora.datamodules.sources.shakespeare import ShakespeareCorpus

__all__ = ["BBCNews", "HubDataset", "LocalFiles", "Record", "ShakespeareCorpus", "TextSource"]
