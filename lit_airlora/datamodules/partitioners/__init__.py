"""Partitioners: how records are shared out among clients (chosen in YAML by ``class_path``)."""

from lit_airlora.datamodules.partitioners.base import Partitioner, check_min_samples
from lit_airlora.datamodules.partitioners.dirichlet import Dirichlet
from lit_airlora.datamodules.partitioners.iid import IID
from lit_airlora.datamodules.partitioners.natural import Natural

__all__ = ["IID", "Dirichlet", "Natural", "Partitioner", "check_min_samples"]
