"""The upload-stage hook protocol: :class:`StageCallback` and the dispatch the module runs.

Lightning has no public custom-hook API, so a module that drives the stages (a
:class:`StageDriver`, e.g. ``FederatedLoRAModule``, or the remote link in a plain module) calls
these hooks itself, stage by stage, on every :class:`StageCallback` of ``trainer.callbacks``,
whatever their order:

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

A callback says what it writes: ``stage`` names the stage(s) whose output it produces (only
then may it replace ``ctx.uploads`` in that stage's hook), ``aggregates`` says it sets
``ctx.aggregate``. Observers (loggers, policies) claim nothing and may read every hook. Two
callbacks claiming the transmit stage, two that aggregate, or a write outside a claimed stage
(a compressor running after the channel) are refused. With no callbacks the round is ideal
FedAvg over a perfect channel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

if TYPE_CHECKING:
    from lit_airlora.federated.plan import RoundPlan
    from lit_airlora.federated.upload import RoundContext

STAGE_HOOKS = (
    "on_round_start",
    "on_upload_encode",
    "on_upload_transmit",
    "on_upload_aggregate",
    "on_round_end",
)
#: Upload stages in the order the module runs them, and the hook of each.
STAGES = ("encode", "transmit", "aggregate")
UPLOAD_HOOKS = {stage: f"on_upload_{stage}" for stage in STAGES}
_HOOK_PREFIXES = ("on_upload_", "on_round_")


class StageDriver:
    """A LightningModule that dispatches the stage hooks itself each round.

    Attributes:
        round_plan: The current round's plan, published before ``on_round_start``, and round
            0's at ``setup("fit")`` (for checks at fit start: its step counts are before
            Lightning sizes the epoch); callbacks read it instead of the module's internals.
    """

    round_plan: RoundPlan | None = None


class StageCallback(Callback):
    """Base of every callback taking part in the upload stages (subclass it; hooks are no-ops).

    Class attributes say what the callback writes (checked when the class is created, and
    against the other callbacks at ``setup``):

    Attributes:
        stage: Stage(s) whose output this callback produces: ``"encode"`` (it rewrites uploads
            before the channel), ``"transmit"`` (it replaces uploads by what the server
            received), ``"aggregate"``, a tuple of them, or ``None`` for an observer.
        aggregates: Whether it sets ``ctx.aggregate`` (over-the-air aggregation, a custom
            aggregation stage). At most one callback of a run aggregates.
        drives_stages: Whether it runs the stages itself in a module that is not a
            :class:`StageDriver` (remote-link callbacks).

    A hook name starting with ``on_upload_`` or ``on_round_`` that is not one of the five
    (a misspelling) is a ``TypeError`` when the subclass is defined. Subclasses that override
    ``setup`` call ``super().setup(trainer, pl_module, stage)``.
    """

    stage: ClassVar[str | tuple[str, ...] | None] = None
    aggregates: ClassVar[bool] = False
    drives_stages: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        check_hook_names(cls)
        check_claims(cls)

    @classmethod
    def claimed_stages(cls) -> tuple[str, ...]:
        """The stages this callback claims, as a tuple."""
        return _as_stages(cls.stage)

    def on_round_start(self, trainer: Trainer, pl_module: LightningModule, round_idx: int) -> None:
        """Before local training of round ``round_idx`` (set ranks, ratios, bandwidth)."""

    def on_upload_encode(
        self, trainer: Trainer, pl_module: LightningModule, ctx: RoundContext
    ) -> None:
        """Compress ``ctx.uploads`` (claim ``stage = "encode"`` to replace them)."""

    def on_upload_transmit(
        self, trainer: Trainer, pl_module: LightningModule, ctx: RoundContext
    ) -> None:
        """Send ``ctx.uploads`` over a channel (claim ``stage = "transmit"``)."""

    def on_upload_aggregate(
        self, trainer: Trainer, pl_module: LightningModule, ctx: RoundContext
    ) -> None:
        """Observe the received uploads, or set ``ctx.aggregate`` (``aggregates = True``)."""

    def on_round_end(self, trainer: Trainer, pl_module: LightningModule, ctx: RoundContext) -> None:
        """After the global adapter is updated: observe the round, add ``ctx.metrics``."""

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        callbacks = stage_callbacks(trainer.callbacks)
        if callbacks and callbacks[0] is self:  # once per run, by the first stage callback
            check_stage_callbacks(trainer.callbacks)
            warn_if_undriven(callbacks, pl_module)


def check_hook_names(cls: type) -> None:
    """Refuse a stage-looking method that is not a stage hook (a misspelt one never runs)."""
    for name in vars(cls):
        if name.startswith(_HOOK_PREFIXES) and name not in STAGE_HOOKS:
            raise TypeError(
                f"{cls.__qualname__}.{name} is not a stage hook; the hooks are "
                f"{', '.join(STAGE_HOOKS)}: rename it."
            )


def check_claims(cls: type[StageCallback]) -> None:
    """A claimed stage must be implemented, and aggregating belongs to transmit or aggregate."""
    for stage in _as_stages(cls.stage, owner=cls.__qualname__):
        if getattr(cls, UPLOAD_HOOKS[stage]) is getattr(StageCallback, UPLOAD_HOOKS[stage]):
            raise TypeError(
                f"{cls.__qualname__} claims `stage` {stage!r} but does not define "
                f"`{UPLOAD_HOOKS[stage]}`: define it or change `stage`."
            )
    if cls.aggregates and not {"transmit", "aggregate"} & set(_as_stages(cls.stage)):
        raise TypeError(
            f"{cls.__qualname__} sets `aggregates = True` but claims `stage` {cls.stage!r}: "
            "an aggregating callback claims 'transmit' (over the air) or 'aggregate'."
        )


def check_stage_callbacks(callbacks: Iterable[Callback]) -> None:
    """Refuse plain callbacks with stage hooks and conflicting claims (run at ``setup``)."""
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, StageCallback):
            _refuse_plain_stage_hooks(callback)
    stage_callbacks = [c for c in callbacks if isinstance(c, StageCallback)]
    _refuse_duplicates([c for c in stage_callbacks if "transmit" in c.claimed_stages()], "transmit")
    _refuse_duplicates([c for c in stage_callbacks if c.aggregates], "aggregate")


def warn_if_undriven(callbacks: Sequence[StageCallback], pl_module: object) -> None:
    """Warn (once, on rank zero) when stage hooks exist but nothing will call them."""
    if isinstance(pl_module, StageDriver) or any(c.drives_stages for c in callbacks):
        return
    names = ", ".join(type(c).__qualname__ for c in callbacks)
    rank_zero_warn(
        f"Stage callbacks ({names}) are in the trainer, but {type(pl_module).__qualname__} does "
        "not run the upload stages and no remote-link callback drives them, so their stage "
        "hooks never run: add a remote-link callback (e.g. lit_airlora.callbacks.sparsify."
        "Sparsify, DigitalUplink, OverTheAirAggregation) or use FederatedLoRAModule."
    )


def _refuse_plain_stage_hooks(callback: object) -> None:
    hooks = [h for h in STAGE_HOOKS if callable(getattr(callback, h, None))]
    if hooks:
        raise TypeError(
            f"{type(callback).__qualname__} defines {', '.join(hooks)} but is not a "
            "StageCallback, so they would never run: subclass "
            "lit_airlora.federated.stages.StageCallback."
        )


def _refuse_duplicates(claimants: Sequence[StageCallback], what: str) -> None:
    if len(claimants) > 1:
        names = ", ".join(type(c).__qualname__ for c in claimants)
        raise ValueError(
            f"`trainer.callbacks` has {len(claimants)} callbacks that {what} ({names}); "
            f"a round has one {what} stage: keep one of them."
        )


def stage_callbacks(callbacks: Iterable[object] | None) -> list[StageCallback]:
    """The :class:`StageCallback` instances of ``callbacks``, in order."""
    return [c for c in callbacks or () if isinstance(c, StageCallback)]


def dispatch(hook: str, callbacks: Iterable[object], *args) -> None:
    """Call ``hook`` on every :class:`StageCallback` of ``callbacks``, in the given order."""
    if hook not in STAGE_HOOKS:
        raise ValueError(f"`hook` ({hook!r}) must be one of {STAGE_HOOKS}.")
    for callback in stage_callbacks(callbacks):
        getattr(callback, hook)(*args)


def dispatch_upload_stage(
    stage: str, callbacks: Iterable[object], trainer, pl_module, ctx: RoundContext
) -> None:
    """Run one upload stage, refusing writes a callback did not claim.

    Only a callback claiming ``stage`` may replace ``ctx.uploads`` in it, and only one with
    ``aggregates`` may set ``ctx.aggregate`` (a compressor hooked after the channel would
    otherwise silently compress what the server already received).
    """
    for callback in stage_callbacks(callbacks):
        uploads, aggregate = ctx.uploads, ctx.aggregate
        getattr(callback, UPLOAD_HOOKS[stage])(trainer, pl_module, ctx)
        if ctx.uploads is not uploads and stage not in callback.claimed_stages():
            raise RuntimeError(
                f"{type(callback).__qualname__} replaced `ctx.uploads` in the {stage!r} stage "
                f"but claims `stage` {callback.stage!r}: move the work to the hook of its "
                f"stage (a compressor encodes before the channel) or claim {stage!r}."
            )
        if ctx.aggregate is not aggregate and not callback.aggregates:
            raise RuntimeError(
                f"{type(callback).__qualname__} set `ctx.aggregate` in the {stage!r} stage "
                "without `aggregates = True`: declare it (one aggregating callback per run)."
            )


def _as_stages(stage, owner: str | None = None) -> tuple[str, ...]:
    stages = () if stage is None else (stage,) if isinstance(stage, str) else tuple(stage)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise TypeError(
            f"{owner or 'A StageCallback'} claims `stage` {stage!r}; valid stages are "
            f"{STAGES} (a tuple of them) or None."
        )
    return stages
