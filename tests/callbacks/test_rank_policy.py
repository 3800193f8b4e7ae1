"""RankPolicyCallback on a plain LightningModule holding a peft LoRA model (no set_ranks)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_airlora.callbacks.rank_heatmap import rank_heatmap_figure, short_module_names
from lit_airlora.callbacks.rank_policy import RankPolicyCallback
from lit_airlora.channel.large_scale import FixedSNR
from lit_airlora.lora.layers import adapter_tensors, find_lora_layers
from lit_airlora.policy.capacity_greedy import CapacityGreedyUniform
from lit_airlora.policy.fixed import FixedRank
from lit_airlora.policy.importance import ImportanceBudget
from tests.callbacks.rank_policy_helpers import ScriptedRanks, SpectrumReader


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 1)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class BoringLoRA(L.LightningModule):
    """A user's own module: automatic optimisation, a peft LoRA model, a logged train_loss."""

    def __init__(self):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(0)
        self.net = get_peft_model(TinyNet(), LoraConfig(r=4, target_modules=["fc1", "fc2"]))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.02)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(32, 8, generator=g)
        return DataLoader(TensorDataset(x, x[:, :1]), batch_size=8)


def _fit(root, callback, max_epochs=3, ckpt_path=None, logger=False, model=None):
    L.seed_everything(0, verbose=False)
    model = model or BoringLoRA()
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=logger,
        default_root_dir=str(root),
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer, model


def test_plain_module_ranks_follow_policy_and_feedback_flows(tmp_path):
    policy = SpectrumReader([4, 2, 3])
    callback = RankPolicyCallback(policy)
    trainer, _ = _fit(tmp_path, callback)
    assert callback.rounds == [0, 1, 2]
    assert callback.rank_history == {"fc1": [4, 2, 3], "fc2": [4, 2, 3]}
    assert int(policy.updates) == 3
    assert all(loss is not None and loss > 0 for _, loss in policy.seen)
    assert trainer.logged_metrics["policy/mean_rank"] == 3.0
    assert callback.spectrum["fc1"].shape == (4,) and callback.spectrum["fc1"][0] > 0
    # Dropped components contribute nothing: B's dropped columns are zero.
    B = adapter_tensors(callback._masks.layers)["fc1.lora_B"]
    assert torch.count_nonzero(B[:, 3:]) == 0


def test_costly_observations_only_for_policies_that_read_them(tmp_path):
    plain, reader = ScriptedRanks([4, 2]), SpectrumReader([4, 2])
    plain_cb, reader_cb = RankPolicyCallback(plain), RankPolicyCallback(reader)
    _fit(tmp_path / "plain", plain_cb, max_epochs=2)
    _fit(tmp_path / "reader", reader_cb, max_epochs=2)
    assert plain_cb.spectrum is None
    assert all(o.importance is None and o.update_spectrum is None for o in plain.observed)
    assert all(o.importance is not None for o in reader.observed)
    assert reader.observed[0].update_spectrum is None  # no update yet before round 1
    assert reader.observed[1].update_spectrum["fc1"][0] > 0


def test_plain_module_resume_matches_uninterrupted(tmp_path):
    _, full = _fit(tmp_path / "full", RankPolicyCallback(SpectrumReader([4, 2, 3])))
    cut = RankPolicyCallback(SpectrumReader([4, 2, 3]))
    trainer, _ = _fit(tmp_path / "cut", cut, max_epochs=2)
    ckpt = trainer.checkpoint_callback.best_model_path
    resumed_cb = RankPolicyCallback(SpectrumReader([4, 2, 3]))
    _, resumed = _fit(tmp_path / "cut", resumed_cb, ckpt_path=ckpt)
    assert resumed_cb.rounds == [0, 1, 2] and int(resumed_cb.policy.updates) == 3
    expected = adapter_tensors(find_lora_layers(full))
    for name, value in adapter_tensors(find_lora_layers(resumed)).items():
        torch.testing.assert_close(value, expected[name])


def test_heatmap_logged_to_tensorboard(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(str(tmp_path), name="tb")
    calls = []
    experiment = logger.experiment
    original = experiment.add_figure
    experiment.add_figure = lambda tag, fig, **kw: (
        calls.append((tag, kw["global_step"])) or original(tag, fig, **kw)
    )
    _fit(tmp_path, RankPolicyCallback(ScriptedRanks([4, 1])), max_epochs=2, logger=logger)
    assert calls == [("policy/rank_heatmap", 0), ("policy/rank_heatmap", 1)]


def test_heatmap_figure_shape():
    figure = rank_heatmap_figure([0, 1, 2], {"a.l0.q": [1, 2, 3], "a.l1.q": [4, 4, 4]}, 4)
    image = figure.axes[0].images[0].get_array()
    assert image.shape == (2, 3)
    assert short_module_names(["m.layers.0.q", "m.layers.1.q"]) == ["0.q", "1.q"]


def test_capacity_greedy_with_large_scale_snr(tmp_path):
    # fc1: 8 -> 16, fc2: 16 -> 1: 25 + 17 + 2 = 44 values per rank (SVD-form), 1408 bits.
    policy = CapacityGreedyUniform(bandwidth_hz=1000.0, latency_budget_s=1.0)
    callback = RankPolicyCallback(policy, large_scale=FixedSNR(snr_db=10.0), bandwidth_hz=1000.0)
    _fit(tmp_path, callback, max_epochs=1)
    assert callback.rank_history["fc1"] == [2]  # 3459 bit/s budget: 2 * 1408 fits, 3 do not


def test_missing_observation_fails_before_training(tmp_path):
    callback = RankPolicyCallback(CapacityGreedyUniform())
    with pytest.raises(ValueError, match=r"requires the observation `snr_db`"):
        _fit(tmp_path, callback, max_epochs=1)


def test_rank_min_above_max_rank_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"`rank` \(8\) of FixedRank must be <= `max_rank` \(4\)"):
        _fit(tmp_path, RankPolicyCallback(FixedRank(8)), max_epochs=1)


def test_importance_budget_every_other_round(tmp_path):
    callback = RankPolicyCallback(ImportanceBudget(total_rank_budget=5), every_n_rounds=2)
    _fit(tmp_path, callback, max_epochs=3)
    totals = [callback.rank_history["fc1"][t] + callback.rank_history["fc2"][t] for t in range(3)]
    assert totals == [5, 5, 5]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"policy": "fixed"}, TypeError, "`policy`"),
        ({"truncate": "random"}, ValueError, "`truncate`"),
        ({"every_n_rounds": 0}, ValueError, "`every_n_rounds`"),
        ({"bandwidth_hz": -1.0}, ValueError, "`bandwidth_hz`"),
    ],
)
def test_bad_callback_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        RankPolicyCallback(**{"policy": FixedRank(2), **kwargs})


def test_state_dict_is_weights_only_loadable(tmp_path):
    callback = RankPolicyCallback(ScriptedRanks([2]))
    callback.rounds, callback.rank_history = [0, 1], {"fc1": [2, 2]}
    callback.spectrum, callback.value_power = {"fc1": torch.ones(4)}, 0.5
    torch.save(callback.state_dict(), tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    other = RankPolicyCallback(ScriptedRanks([2]))
    other.load_state_dict(loaded)
    assert other.rounds == [0, 1] and other.rank_history == {"fc1": [2, 2]}
    assert torch.equal(other.spectrum["fc1"], torch.ones(4)) and other.value_power == 0.5


def test_remote_link_stages_see_the_policy_ranks(tmp_path):
    from lit_airlora.callbacks.remote_link import RemoteLinkMixin

    class RanksSpy(RemoteLinkMixin):
        def __init__(self):
            self.seen = []

        def on_upload_encode(self, trainer, pl_module, ctx):
            self.seen.append(dict(ctx.uploads[0].ranks))

    spy = RanksSpy()
    callback = RankPolicyCallback(SpectrumReader([4, 2]))
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=[callback, spy],
    )
    trainer.fit(BoringLoRA())
    assert spy.seen == [{"fc1": 4, "fc2": 4}, {"fc1": 2, "fc2": 2}]
    assert callback.spectrum is not None and int(callback.policy.updates) == 2
