"""lit-airlora: federated and remote LoRA fine-tuning of LLMs over simulated wireless links.

Heavy imports (Lightning, peft, Sionna) happen in the submodules, not here.
"""

__version__ = "0.1.0"
