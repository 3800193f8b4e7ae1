"""Federated text datamodules: sources, partitioners, packing and the round schedule."""

from lit_airlora.datamodules.blocks import ClientBlockDataset
from lit_airlora.datamodules.classification import FederatedClassificationDataModule
from lit_airlora.datamodules.edge_schedule import EdgeSchedule
from lit_airlora.datamodules.federated import FederatedTextDataModule
from lit_airlora.datamodules.partitioners import IID, Dirichlet, Natural, Partitioner
from lit_airlora.datamodules.sampler import RoundBatchSampler
from lit_airlora.datamodules.schedule import RoundSchedule
from lit_airlora.datamodules.sources import (
    BBCNews,
    HubDataset,
    LocalFiles,
    ShakespeareCorpus,
    TextSource,
)
from lit_airlora.datamodules.split_datamodule import SplitTextDataModule, StepBatchSampler

__all__ = [
    "IID",
    "BBCNews",
    "ClientBlockDataset",
    "Dirichlet",
    "EdgeSchedule",
    "FederatedClassificationDataModule",
    "FederatedTextDataModule",
    "HubDataset",
    "LocalFiles",
    "Natural",
    "Partitioner",
    "RoundBatchSampler",
    "RoundSchedule",
    "ShakespeareCorpus",
    "SplitTextDataModule",
    "StepBatchSampler",
    "TextSource",
]
