"""Table II of pAirZero for OPT-125M, from a config without weights."""

import pytest

from lit_airlora.zeroth_order.memory import count_parameters, round_costs


def test_table_ii_arithmetic_for_opt_125m():
    from transformers import OPTConfig

    num_params = count_parameters(OPTConfig())  # the defaults are OPT-125M's
    assert num_params == pytest.approx(125.2e6, rel=1e-3)
    costs = round_costs(num_params, bytes_per_value=2)
    assert costs["fo_adam_upload_mib"] == pytest.approx(238.88, abs=0.005)  # fp16 gradient
    assert costs["fo_adam_memory_mib"] == pytest.approx(955.58, rel=1e-3)  # paper: 955.58 MB
    assert costs["zo_memory_mib"] == pytest.approx(250, rel=0.05)  # paper: about 250 MB
    assert costs["zo_memory_mib"] / costs["fo_adam_memory_mib"] == pytest.approx(0.25)
    assert costs["analog_upload_bits"] == 16 and costs["sign_upload_bits"] == 1
