"""LoRA settings: a validated dataclass and the peft wrapping it drives."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import nn

from lit_airlora.lora.svd_form import add_singular_values


@dataclass
class LoRASettings:
    """Masked max-rank LoRA settings.

    Args:
        target_modules: Last names of the linear modules to adapt (``["q_proj", "v_proj"]``).
        max_rank: Rank allocated once per module; active ranks move in ``[1, max_rank]``.
        rank: Initial active rank of every module (defaults to ``max_rank``).
        alpha: LoRA alpha; the effective scaling is ``alpha / active_rank`` (peft's convention).
        dropout: Dropout on the LoRA input.
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
    svd_form: bool = False
    orth_reg_weight: float = 0.01

    def __post_init__(self) -> None:
        if self.max_rank <= 0:
            raise ValueError(f"`max_rank` ({self.max_rank}) must be a positive integer.")
        if self.rank is not None and not 1 <= self.rank <= self.max_rank:
            raise ValueError(f"`rank` ({self.rank}) must be in [1, max_rank={self.max_rank}].")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"`dropout` ({self.dropout}) must be in [0, 1).")
        if not (math.isfinite(self.orth_reg_weight) and self.orth_reg_weight >= 0):
            raise ValueError(
                f"`orth_reg_weight` ({self.orth_reg_weight}) must be finite and >= 0 "
                "(AirLLM uses 0.01)."
            )
        if not self.target_modules:
            raise ValueError("`target_modules` is empty: name at least one linear module.")

    @property
    def initial_rank(self) -> int:
        return self.max_rank if self.rank is None else self.rank


def lora_settings(lora: LoRASettings | dict | None) -> LoRASettings:
    """The settings from themselves, their dict (checkpoint hyperparameters) or ``None``."""
    if lora is None:
        return LoRASettings()
    if isinstance(lora, dict):
        return LoRASettings(**lora)
    if isinstance(lora, LoRASettings):
        return lora
    raise TypeError(
        f"`lora` ({type(lora).__name__}) must be LoRA settings (target_modules, max_rank, ...)."
    )


def linear_module_names(model: nn.Module) -> list[str]:
    """Distinct last-name parts of the model's linear layers (what ``target_modules`` can name)."""
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    return sorted(names)


def check_targets(model: nn.Module, settings: LoRASettings) -> None:
    """Raise if a target matches no linear module or a layer is narrower than ``max_rank``."""
    available = linear_module_names(model)
    missing = [t for t in settings.target_modules if t not in available]
    if missing:
        raise ValueError(
            f"`target_modules` {missing} match no linear module of the model; "
            f"its linear modules are: {available}."
        )
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in settings.target_modules:
            width = min(module.in_features, module.out_features)
            if settings.max_rank > width:
                raise ValueError(
                    f"`max_rank` ({settings.max_rank}) exceeds the width of `{name}` "
                    f"({module.in_features} -> {module.out_features}); use max_rank <= {width}."
                )


def wrap_lora(model: nn.Module, settings: LoRASettings, task_type: str = "CAUSAL_LM"):
    """Wrap ``model`` with a peft LoRA adapter allocated at ``max_rank``.

    ``task_type="SEQ_CLS"`` also makes peft train and save the classification head in full.
    """
    from peft import LoraConfig, get_peft_model

    check_targets(model, settings)
    config = LoraConfig(
        r=settings.max_rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        task_type=task_type,
    )
    wrapped = get_peft_model(model, config)
    if settings.svd_form:
        add_singular_values(wrapped)
    return wrapped
