"""AirLLM's environment numbers: OPT-1.3B feasibility from a config, rank coding, reward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_airlora.policy.airllm_env import AirLLMEnvironment, decode_ranks, encode_ranks
from tests.policy.policy_helpers import observation

AIRLLM_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def opt_1p3b_shapes_from_config() -> dict[str, tuple[int, int]]:
    """OPT-1.3B built on the meta device from its config (no weights): adapted linear shapes."""
    from transformers import OPTConfig, OPTForSequenceClassification

    config = OPTConfig(
        hidden_size=2048,
        num_hidden_layers=24,
        ffn_dim=8192,
        num_attention_heads=32,
        word_embed_proj_dim=2048,
        num_labels=2,
    )
    with torch.device("meta"):
        model = OPTForSequenceClassification(config)
    return {
        name: (m.in_features, m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in AIRLLM_TARGETS
    }


@pytest.fixture(scope="module")
def opt_shapes():
    return opt_1p3b_shapes_from_config()


@pytest.mark.parametrize(
    ("snr_db", "feasible"), [(-5, False), (0, False), (5, False), (10, True), (15, True)]
)
def test_opt_1p3b_rank_8_feasibility(opt_shapes, snr_db, feasible):
    assert len(opt_shapes) == 144
    env = AirLLMEnvironment()  # 100 MHz, 1 s, 32 bit, SVD-form (+1 value per rank)
    cost = env.cost(dict.fromkeys(opt_shapes, 8), observation(opt_shapes, snr_db))
    assert (cost <= 1.0) == feasible


def test_opt_1p3b_average_feasible_rank_at_minus_5_db(opt_shapes):
    env = AirLLMEnvironment()
    obs = observation(opt_shapes, -5.0)
    # Closed form: B log2(1 + 10^-0.5) tau / (32 * 24 * (4 * 4097 + 2 * 10241)) bits per rank.
    expected = 100e6 * torch.log2(torch.tensor(1 + 10**-0.5, dtype=torch.float64)) / (32 * 884_880)
    assert env.max_uniform_rank(obs) == pytest.approx(float(expected), rel=1e-12)
    assert env.max_uniform_rank(obs) == pytest.approx(1.4, abs=0.01)
    assert env.cost(dict.fromkeys(opt_shapes, 1), obs) <= 1.0
    assert env.cost(dict.fromkeys(opt_shapes, 2), obs) > 1.0


def test_link_airtime_is_the_priced_cost_times_the_latency_budget():
    # Three clients send the priced payload at their own Shannon rates, in parallel: the round
    # lasts as long as the slowest upload, c tau; each client spends P bits / C_k.
    shapes, ranks = {"a": (64, 64), "b": (64, 128)}, {"a": 2, "b": 1}
    env = AirLLMEnvironment(bandwidth_hz=1e6, latency_budget_s=0.5, tx_power_w=0.3)
    obs = observation(shapes, [3.0, 10.0, -2.0])
    bits = env.payload_bits(ranks, shapes)
    costs = env.link_costs(torch.full((3,), bits), obs.snr_db)
    assert costs["comm/airtime_s"] == pytest.approx(env.cost(ranks, obs) * 0.5, rel=1e-12)
    rates = 1e6 * torch.log2(1 + 10 ** (obs.snr_db / 10))  # closed form, bit/s
    assert costs["comm/energy_j"] == pytest.approx(float(0.3 * (bits / rates).sum()), rel=1e-12)
    silent = env.link_costs(torch.zeros(3), obs.snr_db)  # a skipped round sends nothing
    assert silent == {"comm/airtime_s": 0.0, "comm/energy_j": 0.0}


@pytest.mark.parametrize(("low", "high"), [(1, 8), (2, 5), (1, 1), (3, 64)])
def test_decoding_maps_the_ends_exactly(low, high):
    ends = decode_ranks(torch.tensor([-1.0, 1.0, -5.0, 5.0]), low, high)
    assert ends.tolist() == [low, high, low, high]
    grid = torch.linspace(-1, 1, 1001)
    decoded = decode_ranks(grid, low, high)
    assert decoded.min() == low and decoded.max() == high
    assert bool((decoded[1:] >= decoded[:-1]).all())  # monotone


def test_encoding_inverts_decoding():
    ranks = torch.arange(1, 9)
    assert decode_ranks(encode_ranks(ranks, 1, 8), 1, 8).tolist() == ranks.tolist()


def test_reward_feasible_and_infeasible():
    env = AirLLMEnvironment()
    assert env.reward(0.7, 0.5) == pytest.approx(-0.7 - 0.1 * 0.5)
    assert env.reward(0.7, 2.0) == pytest.approx(-10 * 2.0 - 0.1 * 2.0)
    assert env.reward(float("nan"), 2.0) == pytest.approx(-20.2)


def test_state_vector_layout():
    shapes = {"a": (4, 4), "b": (4, 8)}
    obs = observation(shapes, 5.0, max_rank=8, rank=2)
    obs.token_entropy = 0.25
    obs.scalars["round/unk_rate"] = 0.125
    state = AirLLMEnvironment(snr_range_db=(-5.0, 15.0)).state(obs)
    assert state.tolist() == [0.5, 0.5, 0.25, 0.125, 0.25, 0.25]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bandwidth_hz": 0.0}, "`bandwidth_hz`"),
        ({"latency_budget_s": float("nan")}, "`latency_budget_s`"),
        ({"values_per_rank_extra": 2}, "`values_per_rank_extra`"),
        ({"lambda_comm": -0.1}, "`lambda_comm`"),
        ({"snr_range_db": (15.0, -5.0)}, "`snr_range_db`"),
        ({"bandwidth_range_hz": (0.0, 1e6)}, "`bandwidth_range_hz`"),
        ({"tx_power_w": 0.0}, r"`tx_power_w` \(0.0\) must be a finite number > 0"),
    ],
)
def test_bad_environment_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AirLLMEnvironment(**kwargs)
