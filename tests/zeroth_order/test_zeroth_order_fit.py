"""The zeroth-order training mode end to end on the tiny model: ledger, resume, bad input."""

from types import SimpleNamespace

import pytest
import torch

from lit_airlora.callbacks.scalar_over_the_air import (
    AnalogScalarAggregation,
    SignScalarAggregation,
)
from lit_airlora.channel.fading import AWGN, RayleighBlock
from lit_airlora.channel.large_scale import FixedSNR
from lit_airlora.zeroth_order import PrivacyBudget, ZerothOrder
from tests.helpers import tiny_fit


def _analog(**kwargs):
    kwargs.setdefault("privacy", PrivacyBudget(epsilon=5.0, delta=0.01))
    return AnalogScalarAggregation(FixedSNR(20.0), RayleighBlock(), min_gain_db=10.0, **kwargs)


def _fit(tmp_path, tokenizer, model_dir, callbacks=(), max_epochs=2, **zo):
    zo = {"num_perturbations": 2, "learning_rate": 1e-3, **zo}
    return tiny_fit(
        tmp_path, model_dir, tokenizer, max_epochs=max_epochs, callbacks=list(callbacks),
        module_kwargs={"zeroth_order": ZerothOrder(**zo)}, data_kwargs={"local_steps": 1},
    )  # fmt: skip


def test_resume_after_a_round_gives_the_same_parameters(tmp_path, tiny_llama_dir, tokenizer):
    # Full parameters (the whole model is checkpointed) and the accountant's state to resume.
    def run(folder, max_epochs, ckpt_path=None):
        channel = _analog(privacy=None)
        _, module = tiny_fit(
            tmp_path / folder, tiny_llama_dir, tokenizer, max_epochs=max_epochs,
            callbacks=[channel], data_kwargs={"local_steps": 1}, ckpt_path=ckpt_path,
            module_kwargs={"zeroth_order": ZerothOrder(1e-3, 2, 100.0, 1e-3, "full")},
        )  # fmt: skip
        return module, channel

    full, full_channel = run("full", 2)
    cut, _ = run("cut", 1)
    callback = cut.trainer.checkpoint_callback
    resumed, channel = run("cut", 2, callback.last_model_path or callback.best_model_path)
    expected, actual = full.model.state_dict(), resumed.model.state_dict()
    assert list(actual) == list(expected)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, msg=name)
    assert channel.accountant.noise_multipliers == full_channel.accountant.noise_multipliers
    assert len(channel.accountant.noise_multipliers) == 2


def test_ledger_counts_16_or_1_bits_per_scalar(tmp_path, tiny_llama_dir, tokenizer):
    analog = AnalogScalarAggregation(FixedSNR(10.0), AWGN(), min_gain_db=0.0)
    _, module = _fit(tmp_path / "a", tokenizer, tiny_llama_dir, [analog], max_epochs=1)
    assert module.last_metrics["comm/uplink_bits"] == 3 * 2 * 16  # 3 clients, S = 2
    assert module.last_metrics["comm/bits_per_scalar"] == 16
    sign = SignScalarAggregation(FixedSNR(10.0), AWGN(), min_gain_db=0.0)
    _, module = _fit(tmp_path / "s", tokenizer, tiny_llama_dir, [sign], max_epochs=1)
    assert module.last_metrics["comm/uplink_bits"] == 3 * 2 * 1
    assert module.last_metrics["privacy/epsilon"] > 0  # receiver noise alone still protects


def test_airtime_and_energy_are_the_inverted_symbols_on_air(tmp_path, tiny_llama_dir, tokenizer):
    # Sign-pAirZero on AWGN at 10 dB, h_min = 1, x_max = 1: c = 1 and every client sends
    # S = 2 BPSK symbols b_k (+-1) with |b_k|^2 = 1 / |h_k|^2 = 0.1, each lasting 1 / B.
    power_w, bandwidth_hz = 0.5, 2.0e6
    sign = SignScalarAggregation(
        FixedSNR(10.0), AWGN(), min_gain_db=0.0, tx_power_w=power_w, bandwidth_hz=bandwidth_hz
    )
    _, module = _fit(tmp_path / "s", tokenizer, tiny_llama_dir, [sign], max_epochs=1)
    metrics = module.last_metrics
    assert metrics["comm/channel_uses"] == 2
    assert metrics["comm/airtime_s"] == pytest.approx(2 / bandwidth_hz, rel=1e-12)
    expected_j = 3 * 2 * 0.1 * power_w / bandwidth_hz  # 3 clients x S x |b_k|^2 x P x symbol
    assert metrics["comm/energy_j"] == pytest.approx(expected_j, rel=1e-9)
    # Analog, no artificial noise: |b_k c x_k| <= sqrt(P) keeps each symbol within the budget.
    analog = AnalogScalarAggregation(FixedSNR(10.0), AWGN(), min_gain_db=0.0)
    _, module = _fit(tmp_path / "a", tokenizer, tiny_llama_dir, [analog], max_epochs=1)
    energy_j = module.last_metrics["comm/energy_j"]
    assert 0 < energy_j <= 3 * 2 * analog.tx_power_w / analog.bandwidth_hz


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"perturbation_scale": 0.0}, r"`perturbation_scale` \(0.0\) must be a finite number > 0"),
        ({"perturbation_scale": float("nan")}, "`perturbation_scale`"),
        ({"perturbation_scale": float("inf")}, "`perturbation_scale`"),
        ({"clip": -1.0}, r"`clip` \(-1.0\)"),
        ({"num_perturbations": 0}, r"`num_perturbations` \(0\) must be an integer >= 1"),
        ({"learning_rate": 0.0}, "`learning_rate`"),
        ({"parameters": "all"}, r"`parameters` \('all'\) must be 'lora' or 'full'"),
    ],
)
def test_bad_zeroth_order_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ZerothOrder(**kwargs)


def _setup(callback, callbacks=(), zeroth_order=True):
    trainer = SimpleNamespace(callbacks=[callback, *callbacks], max_epochs=5)
    module = SimpleNamespace(zeroth_order=ZerothOrder() if zeroth_order else None, device="cpu")
    callback.setup(trainer, module, "fit")


def test_sign_upload_with_a_digital_link_is_refused():
    from lit_airlora.callbacks.digital_link import DigitalUplink

    digital = DigitalUplink.__new__(DigitalUplink)  # only its type matters to the check
    sign = SignScalarAggregation(FixedSNR(10.0), AWGN())
    with pytest.raises(ValueError, match="cannot be combined with a `DigitalUplink`"):
        _setup(sign, [digital])


def test_zeroth_order_with_soft_is_refused():
    from lit_airlora.callbacks.soft import SOFT

    with pytest.raises(ValueError, match="`SOFT` compresses LoRA factor updates"):
        SOFT(rho=0.5).setup(None, SimpleNamespace(zeroth_order=ZerothOrder()), "fit")


def test_scalar_uplink_needs_a_zeroth_order_module():
    with pytest.raises(ValueError, match="sends zeroth-order scalars"):
        _setup(_analog(), zeroth_order=False)


def test_unreachable_budget_is_refused_at_setup():
    analog = _analog(privacy=PrivacyBudget(epsilon=0.01, delta=1e-5), max_artificial_noise_db=0.0)
    with pytest.raises(ValueError, match=r"cannot be met in 5 rounds.*reachable epsilon is"):
        _setup(analog)


def test_multi_antenna_fading_is_refused():
    from lit_airlora.channel.fading import FlatMIMO

    with pytest.raises(ValueError, match="must be single-antenna flat fading"):
        AnalogScalarAggregation(FixedSNR(10.0), FlatMIMO(num_rx=2, num_tx=1))


def test_zeroth_order_needs_fedit(tiny_llama_dir):
    from lit_airlora.federated.aggregators import FFALoRA
    from tests.helpers import tiny_module

    with pytest.raises(ValueError, match=r"`aggregator` \(FFALoRA\) cannot combine"):
        tiny_module(tiny_llama_dir, aggregator=FFALoRA(), zeroth_order=ZerothOrder())


def test_classification_head_is_perturbed_and_updated(tmp_path, tiny_llama_dir, tokenizer):
    # The head is trained beside LoRA (peft's modules_to_save copy); its frozen original never
    # runs, so "full" must leave it out or the perturbation finds an unused parameter.
    from lit_airlora.tasks import SequenceClassification
    from tests.helpers import tiny_module
    from tests.tasks.classification_helpers import classification_fit

    lora = ZerothOrder(parameters="lora")
    module = tiny_module(tiny_llama_dir, task=SequenceClassification(3), zeroth_order=lora)
    head = module.head_parameters["score.weight"]
    assert sum(p is head for p in lora.params) == 1
    assert len(lora.params) == 2 * len(module.lora_layers) + 1
    zo = ZerothOrder(1e-3, 2, 100.0, 1e-2, "full")
    _, module = classification_fit(
        tmp_path, tiny_llama_dir, tokenizer, max_epochs=1, data_kwargs={"local_steps": 1},
        module_kwargs={"zeroth_order": zo, "learning_rate": 1e-3},
    )  # fmt: skip
    named = dict(module.model.named_parameters())
    (frozen,) = [p for n, p in named.items() if ".score.original_module." in n]
    head = module.head_parameters["score.weight"]
    assert len(zo.params) == len(named) - 1 and all(p is not frozen for p in zo.params)
    assert not torch.equal(head, frozen)  # the seeded update moved the trained copy
