"""Round end: build the context, run the upload stages, and update the global adapter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lit_airlora.federated.aggregators import Aggregator
from lit_airlora.federated.collectives import reduce_sum
from lit_airlora.federated.stages import STAGES, dispatch_upload_stage
from lit_airlora.federated.upload import RoundContext, Upload

if TYPE_CHECKING:
    from lit_airlora.federated.plan import RoundPlan


def build_context(
    uploads: Sequence[Upload],
    global_adapter: Mapping[str, Tensor],
    aggregator: Aggregator,
    plan: RoundPlan,
) -> RoundContext:
    """The round's context on this rank: its uploads, the ideal aggregate and the plan."""
    return RoundContext(
        round_idx=plan.round_idx,
        uploads=list(uploads),
        global_adapter=dict(global_adapter),
        aggregator=aggregator,
        ideal_aggregate=aggregator.aggregate(uploads, global_adapter, reduce_sum),
        reduce=reduce_sum,
        plan=plan,
    )


def skipped_context(
    global_adapter: Mapping[str, Tensor], aggregator: Aggregator, plan: RoundPlan
) -> RoundContext:
    """The context of a skipped round: no uploads, an empty update, no stage to run."""
    return RoundContext(
        round_idx=plan.round_idx,
        uploads=[],
        global_adapter=dict(global_adapter),
        aggregator=aggregator,
        ideal_aggregate={},
        reduce=reduce_sum,
        plan=plan,
        aggregate={},
    )


def run_stages(trainer, pl_module, ctx: RoundContext) -> RoundContext:
    """Encode -> transmit -> aggregate on every callback, then the default aggregation."""
    callbacks = list(trainer.callbacks) if trainer is not None else []
    for stage in STAGES:
        dispatch_upload_stage(stage, callbacks, trainer, pl_module, ctx)
    if ctx.aggregate is None:
        ctx.aggregate = ctx.aggregator.aggregate(ctx.uploads, ctx.global_adapter, ctx.reduce)
    ctx.metrics.update(aggregation_error(ctx.aggregate, ctx.ideal_aggregate))
    return ctx


def aggregation_error(estimate: Mapping[str, Tensor], ideal: Mapping[str, Tensor]) -> dict:
    """MSE per value and normalised MSE of the server's aggregate against the ideal one."""
    error = sum(float((estimate[n].double() - t.double()).pow(2).sum()) for n, t in ideal.items())
    energy = sum(float(t.double().pow(2).sum()) for t in ideal.values())
    count = sum(t.numel() for t in ideal.values())
    return {
        "channel/agg_mse": error / max(count, 1),
        "channel/agg_nmse": error / energy if energy > 0 else 0.0,
    }


def apply_update(
    global_adapter: Mapping[str, Tensor], update: Mapping[str, Tensor], server_lr: float
) -> tuple[dict[str, Tensor], bool]:
    """``global + server_lr * update``; a non-finite update leaves the adapter unchanged."""
    finite = all(bool(torch.isfinite(t).all()) for t in update.values())
    if not finite:
        return dict(global_adapter), False
    new = dict(global_adapter)
    for name, delta in update.items():
        new[name] = global_adapter[name] + server_lr * delta.to(global_adapter[name].dtype)
    return new, True
