"""Remote-link rounds for LightningModules that are not ours but hold a peft LoRA model.

There, at each epoch end, the adapter itself is "uploaded" through the same stages as a
federated upload (one client, weight 1): AirLLM-style remote fine-tuning, where the adapter
trained in the cloud crosses a wireless link to the device. The received adapter either
replaces the trained one (``"replace"``) or is kept beside it and swapped in for validation
(``"shadow"``). Whichever stage callback reaches its epoch end first runs the whole pipeline for
that epoch; the others find it done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from lit_airlora.federated.aggregators import FedIT, identity_reduce
from lit_airlora.federated.round import round_seed, run_stages
from lit_airlora.federated.stages import StageDriver, dispatch
from lit_airlora.federated.upload import RoundContext, Upload
from lit_airlora.lora.layers import adapter_tensors, find_lora_layers, load_adapter_tensors

REMOTE_MODES = ("replace", "shadow")
_STATE_ATTR = "_lit_airlora_remote"


@dataclass
class RemoteState:
    """What the remote link keeps on a foreign module between epochs."""

    mode: str
    seed: int
    epoch: int = -1
    received: dict[str, Tensor] = field(default_factory=dict)
    trained: dict[str, Tensor] = field(default_factory=dict)


def check_remote_mode(remote_mode: str) -> None:
    if remote_mode not in REMOTE_MODES:
        raise ValueError(f"`remote_mode` ({remote_mode!r}) must be one of {REMOTE_MODES}.")


def is_federated(pl_module) -> bool:
    """Whether the module dispatches the stages itself (our federated module)."""
    return isinstance(pl_module, StageDriver)


def module_ranks(pl_module, layers) -> dict[str, int]:
    """Active ranks of a foreign module: its ``ranks``, attached rank masks, or the max rank."""
    ranks = getattr(pl_module, "ranks", None)
    masks = getattr(pl_module, "lit_airlora_rank_masks", None)
    if isinstance(ranks, dict):
        return dict(ranks)
    if masks is not None:
        return dict(masks.ranks)
    return {name: f.max_rank for name, f in layers.items()}


def remote_round(trainer, pl_module, remote_mode: str = "replace", seed: int = 0):
    """Send the module's adapter through the stages once per epoch; returns the context."""
    state = getattr(pl_module, _STATE_ATTR, None)
    if state is None:
        state = RemoteState(remote_mode, seed)
        setattr(pl_module, _STATE_ATTR, state)
    if state.epoch == trainer.current_epoch:
        return None
    state.epoch = trainer.current_epoch
    layers = find_lora_layers(pl_module)
    adapter = adapter_tensors(layers)
    zeros = {n: torch.zeros_like(t) for n, t in adapter.items()}
    upload = Upload(0, adapter, module_ranks(pl_module, layers), weight=1.0)
    ctx = RoundContext(
        round_idx=trainer.current_epoch,
        uploads=[upload],
        global_adapter=zeros,
        aggregator=FedIT(),
        ideal_aggregate=adapter,
        reduce=identity_reduce,  # every DDP rank holds the same adapter: no sum over ranks
        generator_seed=round_seed(seed, trainer.current_epoch),
        round_clients=[0],
        client_weights={0: 1.0},
    )
    ctx = run_stages(trainer, pl_module, ctx)
    _receive(state, layers, ctx.aggregate)
    pl_module.log_dict({f"remote/{k}": float(v) for k, v in ctx.metrics.items()})
    dispatch("on_round_end", trainer.callbacks, trainer, pl_module, ctx)
    return ctx


def _receive(state: RemoteState, layers, received: dict[str, Tensor]) -> None:
    finite = all(bool(torch.isfinite(t).all()) for t in received.values())
    if not finite:
        return
    if state.mode == "replace":
        load_adapter_tensors(layers, received)
    state.received = {n: t.detach().clone() for n, t in received.items()}


def swap_in_received(pl_module) -> None:
    """Shadow mode: validate the received adapter (call at validation start)."""
    state = getattr(pl_module, _STATE_ATTR, None)
    if state is None or state.mode != "shadow" or not state.received:
        return
    layers = find_lora_layers(pl_module)
    state.trained = adapter_tensors(layers)
    load_adapter_tensors(layers, state.received)


def swap_out_received(pl_module) -> None:
    """Shadow mode: restore the trained adapter (call at validation end)."""
    state = getattr(pl_module, _STATE_ATTR, None)
    if state is None or not state.trained:
        return
    load_adapter_tensors(find_lora_layers(pl_module), state.trained)
    state.trained = {}
