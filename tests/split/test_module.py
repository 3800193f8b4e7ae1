"""SplitLLM and SFL end to end on the tiny 4-block Llama: rounds, export, resume, bad input."""

import pytest
import torch

from tests.split.helpers import split_datamodule, split_fit, split_module


def _flat(adapter):
    return torch.cat([adapter[k].flatten() for k in sorted(adapter)])


def test_splitllm_rounds_train_ledger_and_export(tmp_path, tiny_llama4_dir, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trainer, module = split_fit(tmp_path, tiny_llama4_dir, tokenizer, max_epochs=2)
    metrics = trainer.logged_metrics
    history = module.perplexity_history
    assert len(history) == 3 and history[-1] < history[0]
    # 2 edges x 2 steps x batch 2 x 32 tokens x 32 hidden x 32 bits, on every hop and direction
    for key in ("user_edge/activation", "user_edge/gradient", "edge_cloud/activation"):
        assert metrics[f"comm/{key}_bits"] == 2 * 2 * 2 * 32 * 32 * 32
    assert metrics["round/clients"] == 2 and metrics["comm/round_latency_s"] > 0
    # Each hop's energy is its sending tier's power times the airtime the ledger logged.
    for hop in module.hops:
        for kind, link in (("activation", hop.forward), ("gradient", hop.backward)):
            airtime = float(metrics[f"comm/{hop.name}/{kind}_airtime_s"])
            energy = float(metrics[f"comm/{hop.name}/{kind}_energy_j"])
            assert airtime > 0 and energy == pytest.approx(link.tx_power_w * airtime, rel=1e-6)
    assert module.exported_adapter_dir is not None
    base = AutoModelForCausalLM.from_pretrained(tiny_llama4_dir)
    peft = PeftModel.from_pretrained(base, module.exported_adapter_dir).eval()
    ids = torch.randint(0, 200, (2, 16), generator=torch.Generator().manual_seed(0))
    module.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(peft(input_ids=ids).logits, module.model(input_ids=ids).logits)


def test_sfl_trains_all_users_with_per_user_server_adapters(tmp_path, tiny_llama4_dir, tokenizer):
    trainer, module = split_fit(tmp_path, tiny_llama4_dir, tokenizer, max_epochs=1, sfl=True)
    assert trainer.logged_metrics["round/clients"] == 6
    assert [s.name for s in module.specs] == ["user", "server"]
    assert module.perplexity_history[-1] < module.perplexity_history[0]


def test_resume_after_a_round_matches_an_uninterrupted_run(tmp_path, tiny_llama4_dir, tokenizer):
    _, full = split_fit(tmp_path / "full", tiny_llama4_dir, tokenizer, max_epochs=2)
    trainer, _ = split_fit(tmp_path / "cut", tiny_llama4_dir, tokenizer, max_epochs=1)
    ckpt = trainer.checkpoint_callback.best_model_path
    _, resumed = split_fit(
        tmp_path / "cut", tiny_llama4_dir, tokenizer, max_epochs=2, ckpt_path=ckpt
    )
    torch.testing.assert_close(_flat(resumed.global_adapter), _flat(full.global_adapter))
    assert resumed.traffic.total_bits == full.traffic.total_bits


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cut_points": [1, 4]}, r"`cut_points` \(\[1, 4\]\): a cut at 4 falls inside the head"),
        ({"cut_points": [0, 2]}, r"a cut at 0 falls inside the embedding stage"),
        ({"cut_points": [3, 2]}, r"`cut_points` \(\[3, 2\]\) must be strictly increasing"),
        ({"cut_points": [2]}, r"`cut_points` \(\[2\]\) must be a list of 2 block indices"),
    ],
)
def test_bad_cut_points(tiny_llama4_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_module(tiny_llama4_dir, **kwargs)


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_embd=32, n_layer=4, n_head=2, vocab_size=64, n_positions=32)
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"'gpt2'.*supported model types: \['llama', 'mistral'"):
        split_module(str(tmp_path), lora=None, cut_points=[1, 3])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_edges": 7}, r"`num_edges` \(7\) must be <= the number of users \(6\)"),
        ({"user_edges": [0, 1, 0, 1, 0]}, r"`user_edges` has 5 entries for 6 users"),
        ({"user_edges": [0] * 6}, r"attaches no user to edge\(s\) \[1\]"),
        ({"user_edges": [0, 1, 2, 0, 1, 0]}, r"`user_edges` holds \[2\]"),
        ({"user_selection": "nearest"}, r"`user_selection` \('nearest'\) must be one of"),
    ],
)
def test_bad_edges(tmp_path, tokenizer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        datamodule = split_datamodule(tmp_path, tokenizer, **kwargs)
        datamodule.setup("fit")


def test_edges_pick_their_users_round_robin_and_at_random():
    from lit_airlora.datamodules import EdgeSchedule

    edges = [0, 1, 0, 1, 0, 1]  # edge 0 serves users 0, 2, 4; edge 1 serves 1, 3, 5
    robin = EdgeSchedule(edges, 2, "round_robin", local_steps=1, seed=0)
    assert [robin.clients(t) for t in range(4)] == [[0, 1], [2, 3], [4, 5], [0, 1]]
    random = EdgeSchedule(edges, 2, "random", local_steps=1, seed=0)
    picks = [random.clients(t) for t in range(30)]
    assert all(sorted(u % 2 for u in pair) == [0, 1] for pair in picks)  # one user per edge
    assert {u for pair in picks for u in pair} == set(range(6))
    assert picks == [random.clients(t) for t in range(30)]  # a function of (seed, round)


def test_stream_batches_hold_every_stream_of_a_step(tmp_path, tokenizer):
    """Step-major batches carry one local step of both edges' users; with stream_batches off
    the same blocks come client after client (federated LoRA on SplitLLM's users)."""
    streams = split_datamodule(tmp_path, tokenizer)
    clients = split_datamodule(tmp_path, tokenizer, stream_batches=False)
    for datamodule in (streams, clients):
        datamodule.setup("fit")
    by_step = [b["client_id"].tolist() for b in streams.train_dataloader()]
    by_client = [b["client_id"].tolist() for b in clients.train_dataloader()]
    assert by_step == [[0, 0, 1, 1], [0, 0, 1, 1]] and by_client == [[0, 0], [0, 0], [1, 1], [1, 1]]
    step_ids = [b["input_ids"] for b in streams.train_dataloader()]
    client_ids = [b["input_ids"] for b in clients.train_dataloader()]
    assert torch.equal(torch.cat([step_ids[0][:2], step_ids[1][:2]]), torch.cat(client_ids[:2]))


def test_links_built_in_python_round_trip_through_the_checkpoint(
    tmp_path, tiny_llama4_dir, tokenizer
):
    # Attributes named unlike the arguments (FixedSNR keeps `values`, UniformSNR its
    # generator): the checkpoint stores the recorded arguments instead.
    import warnings

    from lit_airlora.channel.abstraction import AbstractionLink
    from lit_airlora.channel.fading import RayleighBlock
    from lit_airlora.channel.large_scale import FixedSNR, UniformSNR
    from lit_airlora.channel.quantize import StochasticQuantizer, UniformQuantizer
    from lit_airlora.hparams import to_hparam
    from lit_airlora.split.links import AnalogLink, DigitalTensorLink, QuantizedLink
    from lit_airlora.split.module import SplitLLMModule

    links = {
        "uplink": QuantizedLink(UniformQuantizer(bits=4), rate_bps=5e6),
        "downlink": AnalogLink(FixedSNR([12.0]), RayleighBlock(), bandwidth_hz=1e6),
        "backhaul": DigitalTensorLink(
            AbstractionLink(mcs_index=3, max_retransmissions=1),
            quantizer=StochasticQuantizer(bits=2),
            large_scale=UniformSNR(15.0, 25.0, seed=3),
        ),
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*cannot be stored.*")
        trainer, module = split_fit(tmp_path, tiny_llama4_dir, tokenizer, 1, module_kwargs=links)
    loaded = SplitLLMModule.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    for name, link in links.items():
        assert loaded.hparams[name] == to_hparam(link)
    assert loaded.hparams["uplink"]["init_args"]["quantizer"]["init_args"] == {"bits": 4}
    assert loaded.hparams["downlink"]["init_args"]["large_scale"]["init_args"] == {"snr_db": [12.0]}
    access, backhaul = loaded.hops
    assert type(access.forward) is QuantizedLink and access.forward.quantizer.bits_per_value == 4
    assert access.backward.large_scale.values == [12.0]
    assert backhaul.forward.link.mcs_index == 3 and backhaul.forward.link.max_retransmissions == 1
    assert type(backhaul.forward.quantizer) is StochasticQuantizer
    assert backhaul.forward.quantizer.bits_per_value == 2
    torch.testing.assert_close(_flat(loaded.global_adapter), _flat(module.global_adapter))
