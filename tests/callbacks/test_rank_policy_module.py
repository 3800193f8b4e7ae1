"""RankPolicyCallback through FederatedLoRAModule: ranks change between rounds, resume works."""

from __future__ import annotations

import torch

from lit_airlora.callbacks.rank_policy import RankPolicyCallback
from lit_airlora.channel.large_scale import FixedSNR
from lit_airlora.policy.aircomp_mse import SisoAirCompMSE
from lit_airlora.policy.backtracking import BacktrackingRankSelection
from tests.callbacks.rank_policy_helpers import SpectrumReader
from tests.helpers import tiny_fit

SMALL = {"clients_per_round": 2, "local_steps": 1}


def _flat(adapter):
    return torch.cat([adapter[k].flatten() for k in sorted(adapter)])


def _fit(root, model_dir, tokenizer, callback, **kwargs):
    return tiny_fit(root, model_dir, tokenizer, callbacks=[callback], data_kwargs=SMALL, **kwargs)


def test_changing_ranks_keeps_training_and_resume_exact(tmp_path, tiny_llama_dir, tokenizer):
    full_cb = RankPolicyCallback(SpectrumReader([4, 2, 3]))
    trainer, full = _fit(tmp_path / "full", tiny_llama_dir, tokenizer, full_cb, max_epochs=3)
    assert all(h == [4, 2, 3] for h in full_cb.rank_history.values())
    assert full.ranks == dict.fromkeys(full.ranks, 3)
    assert int(full_cb.policy.updates) == 3
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in full_cb.policy.seen)
    assert trainer.logged_metrics["policy/mean_rank"] == 3.0

    cut_cb = RankPolicyCallback(SpectrumReader([4, 2, 3]))
    trainer, _ = _fit(tmp_path / "cut", tiny_llama_dir, tokenizer, cut_cb, max_epochs=1)
    ckpt = trainer.checkpoint_callback.best_model_path
    resumed_cb = RankPolicyCallback(SpectrumReader([4, 2, 3]))
    _, resumed = _fit(
        tmp_path / "cut", tiny_llama_dir, tokenizer, resumed_cb, max_epochs=3, ckpt_path=ckpt
    )
    torch.testing.assert_close(_flat(resumed.global_adapter), _flat(full.global_adapter))
    assert resumed_cb.rank_history == full_cb.rank_history
    assert int(resumed_cb.policy.updates) == 3
    torch.testing.assert_close(
        torch.stack(list(resumed_cb.spectrum.values())),
        torch.stack(list(full_cb.spectrum.values())),
    )


def test_backtracking_through_the_module(tmp_path, tiny_llama_dir, tokenizer):
    policy = BacktrackingRankSelection(SisoAirCompMSE(channel_uses=2000), lr=1e-2)
    callback = RankPolicyCallback(
        policy, large_scale=FixedSNR(snr_db=[0.0, 5.0, 10.0, 0.0, 5.0, 10.0])
    )
    trainer, module = _fit(tmp_path, tiny_llama_dir, tokenizer, callback, max_epochs=2)
    assert callback.spectrum is not None and callback.value_power > 0
    assert all(h[0] == 4 for h in callback.rank_history.values())  # round 0: no spectrum yet
    assert all(1 <= r <= 4 for r in module.ranks.values())
    assert "policy/bound/gap" in trainer.logged_metrics
