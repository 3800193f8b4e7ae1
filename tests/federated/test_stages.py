"""The typed stage API: hook names, stage claims, conflicts, and the dispatch order."""

from types import SimpleNamespace

import pytest
from lightning.pytorch import Callback

from lit_airlora.callbacks.digital_link import DigitalUplink
from lit_airlora.callbacks.over_the_air import OverTheAirAggregation
from lit_airlora.callbacks.sparsify import Sparsify
from lit_airlora.channel.abstraction import AbstractionLink
from lit_airlora.channel.fading import AWGN
from lit_airlora.channel.large_scale import FixedSNR
from lit_airlora.compression.topk import TopK
from lit_airlora.federated.aggregators import Aggregator
from lit_airlora.federated.round import run_stages
from lit_airlora.federated.stages import StageCallback, check_stage_callbacks
from tests.callbacks.soft_helpers import round_context


def test_a_misspelt_hook_is_an_error_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"on_upload_encoder is not a stage hook.*rename it"):

        class Typo(StageCallback):
            def on_upload_encoder(self, trainer, pl_module, ctx):
                pass


@pytest.mark.parametrize(
    ("attributes", "match"),
    [
        ({"stage": "transmit"}, r"claims `stage` 'transmit' but does not define"),
        ({"stage": "channel"}, r"claims `stage` 'channel'; valid stages are"),
        (
            {"aggregates": True, "on_upload_encode": lambda *a: None, "stage": "encode"},
            r"`aggregates = True` but claims `stage` 'encode'",
        ),
    ],
)
def test_stage_claims_are_checked_when_the_class_is_defined(attributes, match):
    with pytest.raises(TypeError, match=match):
        type("Claim", (StageCallback,), attributes)


def test_a_plain_callback_with_stage_hooks_is_refused():
    class Plain(Callback):
        def on_upload_encode(self, trainer, pl_module, ctx):
            pass

    with pytest.raises(TypeError, match=r"Plain defines on_upload_encode but is not a Stage"):
        check_stage_callbacks([Sparsify(TopK(0.5)), Plain()])


def _air() -> OverTheAirAggregation:
    return OverTheAirAggregation(FixedSNR(10.0), AWGN())


@pytest.mark.parametrize(
    ("callbacks", "match"),
    [
        (lambda: [_air(), _air()], r"2 callbacks that transmit \(OverTheAirAggregation, Over"),
        (
            lambda: [_air(), DigitalUplink(AbstractionLink())],
            r"2 callbacks that transmit .* keep one of them",
        ),
    ],
)
def test_conflicting_stage_claims_are_refused_at_setup(callbacks, match):
    callbacks = callbacks()
    trainer = SimpleNamespace(callbacks=callbacks)
    with pytest.raises(ValueError, match=match):
        callbacks[0].setup(trainer, SimpleNamespace(device="cpu"), "fit")


def test_two_aggregating_callbacks_are_refused():
    class ServerMean(StageCallback):
        stage, aggregates = "aggregate", True

        def on_upload_aggregate(self, trainer, pl_module, ctx):
            ctx.aggregate = {}

    with pytest.raises(ValueError, match=r"2 callbacks that aggregate \(OverTheAirAggregation"):
        check_stage_callbacks([_air(), ServerMean()])


class Recorder(StageCallback):
    def __init__(self, calls, tag):
        self.calls, self.tag = calls, tag

    def on_upload_encode(self, trainer, pl_module, ctx):
        self.calls.append((self.tag, "encode"))

    def on_upload_transmit(self, trainer, pl_module, ctx):
        self.calls.append((self.tag, "transmit"))

    def on_upload_aggregate(self, trainer, pl_module, ctx):
        self.calls.append((self.tag, "aggregate"))


def test_stages_run_in_stage_order_whatever_the_callback_order():
    calls = []
    trainer = SimpleNamespace(callbacks=[Recorder(calls, "a"), Callback(), Recorder(calls, "b")])
    run_stages(trainer, None, round_context())
    stages = [stage for _, stage in calls]
    assert stages == ["encode"] * 2 + ["transmit"] * 2 + ["aggregate"] * 2
    assert [tag for tag, _ in calls[:2]] == ["a", "b"]


def test_a_compressor_running_after_the_channel_is_refused():
    class LateTopK(StageCallback):
        stage = "encode"

        def on_upload_encode(self, trainer, pl_module, ctx):
            pass

        def on_upload_transmit(self, trainer, pl_module, ctx):  # compresses received uploads
            ctx.uploads = [u.replace() for u in ctx.uploads]

    trainer = SimpleNamespace(callbacks=[LateTopK()])
    with pytest.raises(RuntimeError, match=r"replaced `ctx.uploads` in the 'transmit' stage"):
        run_stages(trainer, None, round_context())


def test_setting_the_aggregate_needs_a_declaration():
    class Sneaky(StageCallback):
        stage = "transmit"

        def on_upload_transmit(self, trainer, pl_module, ctx):
            ctx.aggregate = dict(ctx.ideal_aggregate)

    with pytest.raises(RuntimeError, match=r"set `ctx.aggregate`.*without `aggregates = True`"):
        run_stages(SimpleNamespace(callbacks=[Sneaky()]), None, round_context())


def test_an_aggregator_missing_a_method_fails_at_construction():
    class Half(Aggregator):
        def partial_sums(self, uploads, template):
            return {}

    with pytest.raises(TypeError, match=r"abstract method '?finalize"):
        Half()
