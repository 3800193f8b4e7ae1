"""Remote-link rounds for LightningModules that are not ours but hold a peft LoRA model.

There, once per training epoch, the adapter itself is "uploaded" through the same stages as a
federated upload (one client, weight 1): AirLLM-style remote fine-tuning, where the adapter
trained in the cloud crosses a wireless link to the device. A trainable head (peft's
``modules_to_save``, e.g. a classification head) crosses with it, sent whole, and every round's
bits are counted in a :class:`~lit_airlora.federated.ledger.CommLedger` (``comm/*``). The
received adapter either replaces the trained one (``"replace"``) or is kept beside it and
swapped in for validation (``"shadow"``). Entries the upload did not carry (components dropped
by SOFT or top-k, ranks masked off, values a digital link lost) keep their trained values: the
device still holds them. A round in which nothing usable arrives (every client truncated in a
deep fade, a non-finite or an all-zero receive) keeps the trained adapter. The state lives in
the callback that drives the rounds (:class:`RemoteState`), never on the user's module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lit_airlora.federated.aggregators import FedIT, identity_reduce
from lit_airlora.federated.ledger import CommLedger
from lit_airlora.federated.plan import RoundPlan
from lit_airlora.federated.round import run_stages
from lit_airlora.federated.stages import StageDriver, dispatch
from lit_airlora.federated.upload import RoundContext, Upload
from lit_airlora.lora.layers import (
    adapter_tensors,
    find_head_parameters,
    find_lora_layers,
    load_adapter_tensors,
)
from lit_airlora.seeding import round_seed

REMOTE_MODES = ("replace", "shadow")


class RankSource(ABC):
    """A callback that knows the active LoRA ranks of a module it masks (a rank policy)."""

    @abstractmethod
    def active_ranks(self) -> dict[str, int] | None:
        """Active rank per adapted module, or None when it masks nothing."""


@dataclass
class RemoteState:
    """What the driving remote-link callback keeps between epochs (checkpointed).

    Attributes:
        epoch: Last epoch whose round ran (-1: none yet).
        received: The adapter received in that round (name -> tensor), empty if none.
        trained: The trained adapter while the received one is swapped in for validation.
        ledger: Bits sent so far (adapter and head, as encoded).
    """

    epoch: int = -1
    received: dict[str, Tensor] = field(default_factory=dict)
    trained: dict[str, Tensor] = field(default_factory=dict)
    ledger: CommLedger = field(default_factory=CommLedger)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "received": {n: t.cpu() for n, t in self.received.items()},
            "ledger": self.ledger.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.received = dict(state["received"])
        self.trained = {}
        if "ledger" in state:  # checkpoints written before the head crossed the link
            self.ledger.load_state_dict(state["ledger"])


def check_remote_mode(remote_mode: str) -> None:
    if remote_mode not in REMOTE_MODES:
        raise ValueError(f"`remote_mode` ({remote_mode!r}) must be one of {REMOTE_MODES}.")


def is_federated(pl_module) -> bool:
    """Whether the module dispatches the stages itself (our federated module)."""
    return isinstance(pl_module, StageDriver)


def module_ranks(callbacks, layers) -> dict[str, int]:
    """Active ranks: those of a :class:`RankSource` callback, else every module's max rank."""
    for callback in callbacks or ():
        ranks = callback.active_ranks() if isinstance(callback, RankSource) else None
        if ranks is not None:
            return dict(ranks)
    return {name: f.max_rank for name, f in layers.items()}


def remote_plan(seed: int, round_idx: int) -> RoundPlan:
    """The plan of a remote-link round: one client (id 0, weight 1), one upload per epoch."""
    return RoundPlan(
        round_idx=round_idx,
        seed=round_seed(seed, round_idx),
        base_seed=seed,
        clients=(0,),
        client_weights={0: 1.0},
        rank_clients=(0,),
        local_steps=1,
        steps_this_rank=1,
    )


def remote_round(
    trainer, pl_module, state: RemoteState, remote_mode: str = "replace", seed: int = 0
) -> RoundContext | None:
    """Send the module's adapter through the stages once per epoch; returns the context."""
    if state.epoch == trainer.current_epoch:
        return None
    state.epoch = trainer.current_epoch
    layers, heads = find_lora_layers(pl_module), find_head_parameters(pl_module)
    adapter = adapter_tensors(layers, heads)
    zeros = {n: torch.zeros_like(t) for n, t in adapter.items()}
    upload = Upload(0, adapter, module_ranks(trainer.callbacks, layers), weight=1.0)
    ctx = RoundContext(
        round_idx=trainer.current_epoch,
        uploads=[upload],
        global_adapter=zeros,
        aggregator=FedIT(),
        ideal_aggregate=adapter,
        reduce=identity_reduce,  # every DDP rank holds the same adapter: no sum over ranks
        plan=remote_plan(seed, trainer.current_epoch),
    )
    ctx = run_stages(trainer, pl_module, ctx)
    kept = receive(state, (layers, heads), adapter, ctx, remote_mode)
    metrics = {f"remote/{k}": float(v) for k, v in ctx.metrics.items()}
    metrics.update(state.ledger.record(ctx.uploads, identity_reduce))
    metrics["remote/kept_trained"] = float(kept)
    # Per epoch, so that any ``log_every_n_steps`` keeps them.
    pl_module.log_dict(metrics, on_step=False, on_epoch=True)
    dispatch("on_round_end", trainer.callbacks, trainer, pl_module, ctx)
    return ctx


def receive(state: RemoteState, live, trained, ctx: RoundContext, remote_mode: str) -> bool:
    """Store (and in replace mode load) what arrived; returns whether the trained adapter stays.

    ``live`` is ``(lora layers, head parameters)``. Entries outside the upload's sent masks
    keep their trained values.
    """
    received = ctx.aggregate
    if not has_signal(received):
        state.received = {}
        return True
    upload = ctx.uploads[0] if ctx.uploads else None
    merged = {}
    for name, value in trained.items():
        sent = upload.sent_mask(name) if upload is not None and name in upload.tensors else None
        new = received.get(name, value).to(value.dtype)
        merged[name] = new if sent is None else torch.where(sent, new, value)
    if remote_mode == "replace":
        load_adapter_tensors(live[0], merged, live[1])
    state.received = {n: t.detach().clone() for n, t in merged.items()}
    return False


def has_signal(received: Mapping[str, Tensor] | None) -> bool:
    """False for nothing, a non-finite receive, or an all-zero one (nobody got through)."""
    if not received:
        return False
    finite = all(bool(torch.isfinite(t).all()) for t in received.values())
    return finite and any(bool(t.ne(0).any()) for t in received.values())


def swap_in_received(pl_module, state: RemoteState) -> None:
    """Shadow mode: validate the received adapter (call at validation start)."""
    if not state.received:
        return
    layers, heads = find_lora_layers(pl_module), find_head_parameters(pl_module)
    state.trained = adapter_tensors(layers, heads)
    load_adapter_tensors(layers, state.received, heads)


def swap_out_received(pl_module, state: RemoteState) -> None:
    """Shadow mode: restore the trained adapter (call at validation end)."""
    if not state.trained:
        return
    heads = find_head_parameters(pl_module)
    load_adapter_tensors(find_lora_layers(pl_module), state.trained, heads)
    state.trained = {}
