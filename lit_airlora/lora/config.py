"""LoRA settings: a validated dataclass and the peft wrapping it drives (linear and GPT-2
``Conv1D`` targets). A peft ``LoraConfig`` given instead is read in :mod:`lit_airlora.lora.inputs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import nn

from lit_airlora.lora.matching import check_layers, rule_of
from lit_airlora.lora.svd_form import add_singular_values

BIASES = ("none", "all", "lora_only")


@dataclass
class LoRASettings:
    """Masked max-rank LoRA settings.

    Args:
        target_modules: Last names of the linear (or GPT-2 ``Conv1D``) modules to adapt
            (``["q_proj", "v_proj"]``; GPT-2: ``["c_attn"]``).
        max_rank: Rank allocated once per module; active ranks move in ``[1, max_rank]``.
        rank: Initial active rank of every module (defaults to ``max_rank``).
        alpha: LoRA alpha; the effective scaling is ``alpha / active_rank`` (peft's convention),
            or ``alpha / sqrt(active_rank)`` with ``rslora``.
        dropout: Dropout on the LoRA input.
        rslora: Rank-stabilised scaling (Kalajdzievski, 2023), as peft's ``use_rslora``.
        bias: Which biases train: ``"none"``, ``"all"`` or ``"lora_only"`` (as in peft); trained
            biases are federated whole, like a classification head.
        exclude_modules: Module names never adapted, even if they match ``target_modules``.
        svd_form: AdaLoRA-like SVD-form adapters ``P diag(e) Q`` (see
            :mod:`lit_airlora.lora.svd_form`) instead of plain ``B A``.
        orth_reg_weight: Weight of the orthogonality penalty
            ``||P^T P - I||^2 + ||Q Q^T - I||^2`` (active ranks) added to the loss in SVD form.
    """

    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    max_rank: int = 8
    rank: int | None = None
    alpha: float = 16.0
    dropout: float = 0.0
    rslora: bool = False
    bias: str = "none"
    exclude_modules: list[str] | None = None
    svd_form: bool = False
    orth_reg_weight: float = 0.01

    def __post_init__(self) -> None:
        if isinstance(self.max_rank, bool) or not isinstance(self.max_rank, int):
            raise ValueError(f"`max_rank` ({self.max_rank!r}) must be a positive integer.")
        if self.max_rank <= 0:
            raise ValueError(f"`max_rank` ({self.max_rank}) must be a positive integer.")
        if self.rank is not None and not 1 <= self.rank <= self.max_rank:
            raise ValueError(f"`rank` ({self.rank}) must be in [1, max_rank={self.max_rank}].")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"`alpha` ({self.alpha}) must be a finite number > 0 (e.g. 16).")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"`dropout` ({self.dropout}) must be in [0, 1).")
        if not (math.isfinite(self.orth_reg_weight) and self.orth_reg_weight >= 0):
            raise ValueError(
                f"`orth_reg_weight` ({self.orth_reg_weight}) must be finite and >= 0 "
                "(AirLLM uses 0.01)."
            )
        if not self.target_modules:
            raise ValueError("`target_modules` is empty: name at least one linear module.")
        if self.bias not in BIASES:
            raise ValueError(f"`bias` ({self.bias!r}) must be one of {BIASES}.")

    @property
    def initial_rank(self) -> int:
        return self.max_rank if self.rank is None else self.rank

    def to_peft(self, task_type: str = "CAUSAL_LM"):
        """The peft ``LoraConfig`` allocating ``max_rank`` with these settings."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.max_rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            use_rslora=self.rslora,
            bias=self.bias,
            exclude_modules=self.exclude_modules,
            task_type=task_type,
        )


def adaptable_modules(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``name -> (d_in, d_out)`` of the linear and GPT-2 ``Conv1D`` modules LoRA can adapt."""
    from transformers.pytorch_utils import Conv1D

    found = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found[name] = (module.in_features, module.out_features)
        elif isinstance(module, Conv1D):  # weight (d_in, d_out): GPT-2's transposed linear
            found[name] = (int(module.weight.shape[0]), int(module.weight.shape[1]))
    return found


def check_targets(
    model: nn.Module, settings: LoRASettings, peft_config=None, task_type: str = "CAUSAL_LM"
) -> None:
    """Raise if a target adapts no linear module or a layer is narrower than ``max_rank``.

    peft's matching rule (:mod:`lit_airlora.lora.matching`, the same the pre-flight applies to
    the weight names on disk) over the model's linear and ``Conv1D`` layers.
    """
    rule = rule_of(peft_config if peft_config is not None else settings, task_type == "SEQ_CLS")
    rank_name = "max_rank" if peft_config is None else "r"
    check_layers(adaptable_modules(model), rule, settings.max_rank, rank_name=rank_name)


def wrap_lora(
    model: nn.Module,
    settings: LoRASettings,
    task_type: str = "CAUSAL_LM",
    peft_config=None,
    adapter_name: str = "default",
):
    """Wrap ``model`` with a peft LoRA adapter allocated at ``max_rank``.

    ``task_type="SEQ_CLS"`` also makes peft train and save the classification head in full.
    A given ``peft_config`` is used as is (a copy, with the task's ``task_type``).
    """
    import copy
    import warnings

    from peft import get_peft_model

    check_targets(model, settings, peft_config, task_type)
    config = settings.to_peft(task_type) if peft_config is None else copy.deepcopy(peft_config)
    if config.task_type not in (None, task_type):
        raise ValueError(
            f"`lora.task_type` ({config.task_type!r}) does not fit the task ({task_type!r}); "
            "leave it unset: the task sets it."
        )
    config.task_type = task_type
    with warnings.catch_warnings():
        # peft notes that it switches fan_in_fan_out on for GPT-2's Conv1D: that is intended.
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        wrapped = get_peft_model(model, config, adapter_name=adapter_name)
    if settings.svd_form:
        add_singular_values(wrapped, adapter_name)
    return wrapped
