"""Remote-link mode: stage callbacks in a plain LightningModule holding a peft LoRA model."""

import lightning as L
import pytest
import torch
from peft import LoraConfig, get_peft_model

from lit_airlora.callbacks.remote_link import RemoteLinkMixin
from lit_airlora.lora.layers import adapter_tensors, find_head_parameters, find_lora_layers
from tests.helpers import PlainLoRAModule, fit_plain


class AddOne(RemoteLinkMixin):
    """A stand-in channel: the server receives every value plus one."""

    stage = "transmit"
    aggregates = True

    def __init__(self, remote_mode):
        self.remote_mode = remote_mode

    def on_upload_transmit(self, trainer, pl_module, ctx):
        ctx.aggregate = {n: t + 1.0 for n, t in ctx.uploads[0].tensors.items()}


@pytest.mark.parametrize("mode", ["replace", "shadow"])
def test_received_adapter_replaces_or_shadows_the_trained_one(tmp_path, mode):
    _, module = fit_plain(tmp_path, [AddOne(mode)], max_epochs=1)
    final = adapter_tensors(find_lora_layers(module))
    validated = module.seen_in_validation[-1]
    for name, value in final.items():
        if mode == "replace":  # the model now holds the received adapter, and validated it
            torch.testing.assert_close(validated[name], value)
        else:  # validation saw trained + 1; the model kept the trained adapter
            torch.testing.assert_close(validated[name], value + 1.0)


class Recorder(RemoteLinkMixin):
    """Records the epochs whose round ran and the uploads it saw; receives what was sent."""

    def __init__(self, remote_mode="replace"):
        self.remote_mode, self.rounds = remote_mode, []

    def on_upload_encode(self, trainer, pl_module, ctx):
        self.rounds.append((ctx.round_idx, trainer.global_step))


@pytest.mark.parametrize(
    "trainer_kwargs",
    [{"limit_train_batches": 2}, {"max_steps": 3}, {"limit_train_batches": 0.5, "max_epochs": 2}],
)
def test_a_truncated_epoch_still_ends_its_round(tmp_path, trainer_kwargs):
    recorder = Recorder()
    kwargs = {"max_epochs": 1, **trainer_kwargs}
    trainer, _ = fit_plain(tmp_path, [recorder], **kwargs)
    steps_per_epoch = trainer.num_training_batches
    expected = [
        (e, min(steps_per_epoch * (e + 1), trainer_kwargs.get("max_steps", 99)))
        for e in range(trainer.current_epoch)
    ]
    assert recorder.rounds == expected


def test_metrics_reach_the_logger_whatever_log_every_n_steps(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(tmp_path, name="csv")
    fit_plain(tmp_path, [AddOne("replace")], max_epochs=2, logger=logger, log_every_n_steps=50)
    text = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    header = text.splitlines()[0].split(",")
    assert "remote/channel/agg_mse" in header and "remote/kept_trained" in header
    column = header.index("remote/channel/agg_mse")
    values = [row.split(",")[column] for row in text.splitlines()[1:]]
    assert sum(bool(v) for v in values) == 2  # one value per epoch (4 steps < 50)


class DeepFade(RemoteLinkMixin):
    """Nobody gets through: the estimate is all zeros (or NaN)."""

    stage, aggregates = "transmit", True

    def __init__(self, value):
        self.value = value

    def on_upload_transmit(self, trainer, pl_module, ctx):
        ctx.aggregate = {
            n: torch.full_like(t, self.value) for n, t in ctx.uploads[0].tensors.items()
        }


@pytest.mark.parametrize("value", [0.0, float("nan")])
def test_a_round_without_signal_keeps_the_trained_adapter(tmp_path, value):
    trainer, module = fit_plain(tmp_path, [DeepFade(value)], max_epochs=1)
    final = adapter_tensors(find_lora_layers(module))
    assert any(bool(t.ne(0).any()) for t in final.values())  # lora_B trained away from zero
    assert all(bool(torch.isfinite(t).all()) for t in final.values())
    assert float(trainer.callback_metrics["remote/kept_trained"]) == 1.0


def test_components_a_compressor_drops_keep_their_local_values(tmp_path):
    from lit_airlora.callbacks.sparsify import Sparsify
    from lit_airlora.compression.topk import TopK

    class Spy(RemoteLinkMixin):
        def __init__(self):
            self.trained, self.masks = {}, {}

        def on_upload_encode(self, trainer, pl_module, ctx):  # runs first: the raw upload
            self.trained = {n: t.clone() for n, t in ctx.uploads[0].tensors.items()}

        def on_upload_aggregate(self, trainer, pl_module, ctx):
            self.masks = {n: ctx.uploads[0].sent_mask(n) for n in self.trained}

    spy = Spy()
    _, module = fit_plain(tmp_path, [spy, Sparsify(TopK(0.5))], max_epochs=1)
    final = adapter_tensors(find_lora_layers(module))
    dropped = {n: ~m & spy.trained[n].ne(0) for n, m in spy.masks.items()}
    assert sum(int(d.sum()) for d in dropped.values()) > 0
    for name, mask in spy.masks.items():  # ideal link: sent entries arrive, dropped ones stay
        torch.testing.assert_close(final[name], spy.trained[name])
        assert bool(mask.any())


def test_state_lives_in_the_callback_and_round_trips_weights_only(tmp_path):
    link = AddOne("shadow")
    _, module = fit_plain(tmp_path, [link], max_epochs=1)
    assert not [k for k in vars(module) if "lit_airlora" in k]
    torch.save(link.state_dict(), tmp_path / "state.pt")
    other = AddOne("shadow")
    other.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert other.remote_state.epoch == 0
    for name, value in link.remote_state.received.items():
        torch.testing.assert_close(other.remote_state.received[name], value)


def test_stage_hooks_nothing_drives_are_warned_about(tmp_path):
    from lit_airlora.federated.stages import StageCallback

    class ScaleUploads(StageCallback):
        stage = "encode"

        def on_upload_encode(self, trainer, pl_module, ctx):
            pass

    with pytest.warns(UserWarning, match=r"ScaleUploads\) are in the trainer, but PlainLoRA"):
        fit_plain(tmp_path, [ScaleUploads()], max_epochs=1)


def test_remote_links_with_different_modes_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"`remote_mode` differs .*AddOne: 'replace'"):
        fit_plain(tmp_path, [AddOne("replace"), Recorder("shadow")], max_epochs=1)


class HeadLoRAModule(PlainLoRAModule):
    """The plain module with a trainable head beside the adapter (peft ``modules_to_save``)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        base = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        config = LoraConfig(r=4, target_modules=["0"], modules_to_save=["2"])
        self.net = get_peft_model(base, config)


class HeadRecorder(RemoteLinkMixin):
    """The server receives half of every value; keeps the uploads and the ledger's bits."""

    stage, aggregates = "transmit", True

    def __init__(self):
        self.remote_mode, self.sent, self.bits = "replace", [], []

    def on_upload_transmit(self, trainer, pl_module, ctx):
        self.sent.append({n: t.clone() for n, t in ctx.uploads[0].tensors.items()})
        ctx.aggregate = {n: 0.5 * t for n, t in ctx.uploads[0].tensors.items()}

    def on_round_end(self, trainer, pl_module, ctx):
        self.bits.append(self.remote_state.ledger.total_bits)


def test_the_head_crosses_the_link_with_the_adapter_and_is_counted(tmp_path):
    """A ``modules_to_save`` head is uploaded whole, replaced by what arrived, and its bits are
    in the ledger: 32 x (A 4x8 + B 16x4 + head 16 + bias 1) = 3616 bits per round."""
    recorder = HeadRecorder()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[recorder],
        default_root_dir=tmp_path,
    )
    module = HeadLoRAModule()
    trainer.fit(module)
    heads = find_head_parameters(module)
    assert sorted(heads) == ["2.bias", "2.weight"]
    for name, value in heads.items():  # the received head (sent / 2) replaced the trained one
        torch.testing.assert_close(value.detach(), 0.5 * recorder.sent[-1][name])
    assert recorder.bits == [3616.0, 7232.0]
    assert trainer.callback_metrics["comm/uplink_bits"] == 3616.0
    state = recorder.state_dict()["remote"]
    assert state["ledger"]["total_bits"] == 7232.0 and "2.weight" in state["received"]
