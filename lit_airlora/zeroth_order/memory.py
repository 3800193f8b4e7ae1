"""Memory and upload arithmetic of a training round (pAirZero's Table II).

First-order Adam holds four values per parameter (weight, gradient and Adam's two moments) and
uploads the gradient; zeroth-order training holds the weights only (the direction is regenerated
from a seed) and uploads one scalar per direction: 16 bits analog, 1 bit as a sign. Activations
are left out, as in the table. Sizes in MiB (2^20 bytes), which is how the paper's "MB" reads:
125,239,296 OPT-125M parameters at 2 bytes are 238.88 MiB.
"""

from __future__ import annotations

import torch

MIB = 2**20
#: Values held per parameter by a first-order Adam step (weight, gradient, two moments).
ADAM_VALUES_PER_PARAM = 4


def count_parameters(model_config) -> int:
    """Parameters of a Hugging Face causal LM built from ``model_config`` on the meta device
    (no weights are allocated or downloaded; tied weights count once)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    return int(sum(p.numel() for p in model.parameters()))


def round_costs(num_params: int, bytes_per_value: int = 2, num_perturbations: int = 1) -> dict:
    """Memory (MiB) and upload per client per round of FO-Adam, pAirZero and Sign-pAirZero.

    Args:
        num_params: Trained parameters.
        bytes_per_value: Bytes per stored value (2: fp16, as the paper).
        num_perturbations: Directions ``S`` per round (scalars uploaded).
    """
    weights_mib = num_params * bytes_per_value / MIB
    return {
        "fo_adam_memory_mib": ADAM_VALUES_PER_PARAM * weights_mib,
        "fo_adam_upload_mib": weights_mib,
        "fo_adam_upload_bits": num_params * bytes_per_value * 8,
        "zo_memory_mib": weights_mib,
        "zo_memory_fraction": 1.0 / ADAM_VALUES_PER_PARAM,
        "analog_upload_bits": 16 * num_perturbations,
        "sign_upload_bits": 1 * num_perturbations,
    }
