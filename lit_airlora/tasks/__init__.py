"""Tasks: what the federated module fine-tunes for (chosen in YAML by ``class_path``)."""

from lit_airlora.tasks.base import Task
from lit_airlora.tasks.causal_lm import CausalLM
from lit_airlora.tasks.classification import SequenceClassification

__all__ = ["CausalLM", "SequenceClassification", "Task"]
