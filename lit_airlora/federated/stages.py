"""The upload-stage hook protocol the module dispatches at round end.

Lightning has no public custom-hook API, so the module calls these hooks itself, stage by stage,
on every callback that defines them (``getattr``), whatever the order of ``trainer.callbacks``:

1. ``on_round_start(trainer, pl_module, round_idx)``: before local training (rank policies,
   TSFA controllers set ranks, sparsity ratios, bandwidth).
2. ``on_upload_encode(trainer, pl_module, ctx)``: compression (SOFT, top-k, quantisation).
3. ``on_upload_transmit(trainer, pl_module, ctx)``: the channel. A digital link replaces
   ``ctx.uploads`` by what the server received; over-the-air aggregation also sets
   ``ctx.aggregate`` (it fuses transmit and aggregate).
4. ``on_upload_aggregate(trainer, pl_module, ctx)``: a custom aggregation stage may set
   ``ctx.aggregate``; otherwise the module's aggregator combines ``ctx.uploads``.
5. ``on_round_end(trainer, pl_module, ctx)``: after the global adapter is updated (policies
   observe the result, controllers update queues, ledgers log).

With no callbacks the round is ideal FedAvg over a perfect channel.
"""

from __future__ import annotations

from collections.abc import Iterable

STAGE_HOOKS = (
    "on_round_start",
    "on_upload_encode",
    "on_upload_transmit",
    "on_upload_aggregate",
    "on_round_end",
)


def dispatch(hook: str, callbacks: Iterable[object], *args) -> None:
    """Call ``hook`` on every callback that defines it, in the given order."""
    if hook not in STAGE_HOOKS:
        raise ValueError(f"`hook` ({hook!r}) must be one of {STAGE_HOOKS}.")
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if callable(method):
            method(*args)
