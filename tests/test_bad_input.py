"""Bad input through the CLI: exit code 2, at most three lines, the argument named.

Cases run ``lit_airlora.cli.main`` in-process. Most are answered by the preflight checks
(PyYAML only) and take milliseconds; the rest build the tiny model or read a file. Two
subprocess runs check what a user really sees, logging included.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback

from lit_airlora.cli import main
from lit_airlora.cli.preflight import argument_name
from tests.bad_input_helpers import (
    REPO,
    assert_refused,
    config_args,
    has_path,
    merged,
    numeric_leaves,
)
from tests.config_helpers import CONFIGS
from tests.helpers import write_corpus

NAMES = [p.name for p in CONFIGS]

# (dotted argument, bad value): meaningless values of the module and data, for every config.
COMMON = [
    ("model.init_args.lora.alpha", "nan"),
    ("model.init_args.lora.alpha", ".nan"),
    ("model.init_args.lora.alpha", "0"),
    ("model.init_args.lora.alpha", "-2"),
    ("model.init_args.learning_rate", "inf"),
    ("model.init_args.learning_rate", "0"),
    ("model.init_args.server_learning_rate", ".nan"),
    ("model.init_args.lora.max_rank", "abc"),
    ("model.init_args.lora.rank", "99"),
    ("model.init_args.lora.dropout", "1.5"),
    ("data.init_args.val_fraction", "1"),
    ("data.init_args.clients_per_round", "99"),
]


def _common_cases():
    for name in NAMES:
        config = merged(name)
        for path, value in COMMON:
            if has_path(config, path):
                yield pytest.param(name, path, value, id=f"{name}:{path.rsplit('.', 1)[1]}={value}")


def _channel_cases():
    """Every number of every callback set to NaN, and zero where it must be positive."""
    for name in NAMES:
        for path in numeric_leaves(merged(name), "trainer.callbacks"):
            leaf = argument_name(path)
            yield pytest.param(name, path, ".nan", id=f"{name}:{leaf}=nan")
            if leaf.endswith(("_hz", "_w")):
                yield pytest.param(name, path, "0", id=f"{name}:{leaf}=0")


@pytest.mark.parametrize(("name", "path", "value"), [*_common_cases(), *_channel_cases()])
def test_meaningless_values_are_refused_before_anything_loads(capsys, name, path, value):
    assert_refused(capsys, [*config_args(name), f"--{path}={value}"], argument_name(path))


def test_a_nan_alpha_never_reaches_the_adapter_config(tmp_path, capsys):
    # The config file itself (not an override) spells NaN as YAML does.
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    lora:\n      alpha: .nan\n")
    args = [*config_args("quickstart.yaml"), "--config", str(bad)]
    assert_refused(capsys, args, "alpha")
    assert not list(tmp_path.rglob("adapter_config.json"))


# -- cases that reach the parser, the classes or the files (tiny model swapped in) --------------
@pytest.fixture
def tiny_args(tiny_llama_dir, tmp_path) -> list[str]:
    return [
        *config_args("quickstart.yaml"),
        f"--model.init_args.model={tiny_llama_dir}",
        "--model.init_args.gguf_file=null",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false",
        "--trainer.max_epochs=1",
    ]


def _local_files(paths: list[str]) -> list[str]:
    return [
        "--data.init_args.source=lit_airlora.datamodules.LocalFiles",
        f"--data.init_args.source.init_args.paths={paths}",
    ]


def _ckpt(tmp_path, kind: str) -> str:
    path = tmp_path / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not a checkpoint")
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("hello.txt", "a zip, not a torch file")
    elif kind == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "unsafe":
        torch.save({"state_dict": {}, "args": argparse.Namespace(x=1)}, path)
    elif kind == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    return str(path)


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        (["--model.init_args.bogus=1"], "bogus"),
        (["--trainer.max_epochs=x"], "max_epochs"),
        (["--model.init_args.aggregator=lit_airlora.federated.aggregators.Nope"], "aggregator"),
        (["--model.init_args.lora.dropout=1.5"], "dropout"),
        (["--model.init_args.lora.target_modules=[nope]"], "target_modules"),
        (["--model.init_args.model=/no/such/folder"], "model"),
        (["--model.init_args.model=pypi:no_such_package_here"], "model"),
        (["--model.init_args.learning_rate=fast"], "learning_rate"),
        (["--model.init_args.lora.max_rank=true"], "max_rank"),
        (["--data.init_args.seq_len=0"], "seq_len"),
        (
            ["--model.init_args.stacked_clients=true", "--model.init_args.lora.dropout=0.1"],
            "stacked_clients",
        ),
        (["--config=/no/such/config.yaml"], "--config"),
    ],
    ids=lambda v: v if isinstance(v, str) else v[0].split("=")[0].rsplit(".", 1)[-1],
)
def test_parser_and_class_errors_are_one_line(capsys, tiny_args, extra, name):
    assert_refused(capsys, [*tiny_args, *extra], name)


def test_invalid_yaml_is_one_line(capsys, tiny_args, tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("model:\n  init_args: [unclosed\n")
    assert_refused(capsys, [*tiny_args, "--config", str(bad)], "--config")


@pytest.mark.parametrize("kind", ["missing_file", "missing_folder", "empty_file", "no_text_files"])
def test_data_file_problems_are_one_line(capsys, tiny_args, tmp_path, kind):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    (tmp_path / "nothing").mkdir()
    paths = {
        "missing_file": [str(tmp_path / "nope.jsonl")],
        "missing_folder": [str(tmp_path / "no_dir")],
        "empty_file": [str(empty)],
        "no_text_files": [str(tmp_path / "nothing")],
    }[kind]
    line = assert_refused(capsys, [*tiny_args, *_local_files(paths)], "paths")
    assert "min_samples_per_client" not in line


def test_missing_hub_dataset_folder_is_one_line(capsys, tiny_args, tmp_path):
    args = [
        "--data.init_args.source=lit_airlora.datamodules.HubDataset",
        f"--data.init_args.source.init_args.path={tmp_path / 'no_dataset'}",
    ]
    assert_refused(capsys, [*tiny_args, *args], "path")


@pytest.mark.parametrize(
    "kind", ["missing", "empty", "text", "zip", "truncated", "unsafe", "foreign"]
)
def test_bad_checkpoints_are_one_line_and_never_suggest_an_unsafe_load(
    capsys, tiny_args, tmp_path, kind
):
    ckpt = str(tmp_path / "nope.ckpt") if kind == "missing" else _ckpt(tmp_path, kind)
    assert_refused(capsys, [*tiny_args, f"--ckpt_path={ckpt}"], "--ckpt_path")


def test_tsfa_min_clients_above_clients_per_round_is_refused(capsys):
    args = [*config_args("soft_tsfa.yaml"), "--trainer.callbacks.1.init_args.min_clients=9"]
    config = yaml.safe_load((REPO / "configs" / "soft_tsfa.yaml").read_text())
    assert config["trainer"]["callbacks"][1]["class_path"].endswith(".TSFA")
    assert_refused(capsys, args, "min_clients")


def test_fixed_snr_list_shorter_than_the_clients_is_refused(capsys, tmp_path):
    system = tmp_path / "fixed.yaml"
    callback = {
        "class_path": "lit_airlora.callbacks.over_the_air.OverTheAirAggregation",
        "init_args": {
            "large_scale": {
                "class_path": "lit_airlora.channel.large_scale.FixedSNR",
                "init_args": {"snr_db": [10.0, 20.0, 5.0]},
            },
            "fading": {"class_path": "lit_airlora.channel.fading.RayleighBlock"},
        },
    }
    system.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    assert_refused(capsys, [*config_args("quickstart.yaml"), "--config", str(system)], "snr_db")


# -- settings that depend on the model: answered from its files, before any heavy import ------
@pytest.fixture
def preflight_only(monkeypatch):
    """Fails the test if the LightningCLI runs: the pre-flight must answer alone."""

    def run(*args, **kwargs):
        raise AssertionError("the pre-flight let this config through to the LightningCLI")

    monkeypatch.setattr("lit_airlora.cli.app.run", run)


def _tiny_model(folder: str) -> list[str]:
    return [f"--model.init_args.model={folder}", "--model.init_args.gguf_file=null"]


def _lora_configs():
    for name in NAMES:
        if has_path(merged(name), "model.init_args.lora.target_modules"):
            yield name


@pytest.mark.parametrize(
    ("extra", "arg"),
    [
        (["--model.init_args.lora.target_modules=[nope]"], "target_modules"),
        (["--model.init_args.lora.target_modules=[q_proj,v_proj]"], "max_rank"),
    ],
    ids=["target_matches_no_layer", "max_rank_above_width"],
)
@pytest.mark.parametrize("name", list(_lora_configs()))
def test_lora_settings_the_model_cannot_take_are_refused_from_its_files(
    capsys, preflight_only, tiny_llama4_dir, name, extra, arg
):
    # tiny_llama4: hidden 32, v_proj 32 -> 16, so max_rank 24 fits q_proj but not v_proj.
    args = [*config_args(name), *_tiny_model(tiny_llama4_dir), "--model.init_args.lora.max_rank=24"]
    line = assert_refused(capsys, [*args, *extra], arg)
    assert ("q_proj" in line) if arg == "target_modules" else ("<= 16" in line), line


@pytest.mark.parametrize(
    ("config", "extra", "arg"),
    [
        ("quickstart.yaml", ["--model.init_args.lora.target_modules=[self_attn.nope]"], "target"),
        ("quickstart.yaml", ["--model.init_args.lora.exclude_modules=[q_proj,v_proj]"], "target"),
        ("splitllm.yaml", ["--model.init_args.cut_points=[2,40]"], "cut_points"),
        ("splitllm.yaml", ["--model.init_args.cut_points=[0,2]"], "cut_points"),
        (
            "splitllm.yaml",
            [
                "--model.init_args.cut_points=[1,3]",
                "--model.init_args.lora.target_modules=[lm_head]",
            ],
            "target_modules",
        ),
        ("sfl.yaml", ["--model.init_args.cut_point=4"], "cut_point"),
        (
            "classification_bbc.yaml",
            ["--model.init_args.task.init_args.num_labels=3"],
            "num_labels",
        ),
    ],
    ids=[
        "dotted_suffix",
        "all_excluded",
        "cut_beyond",
        "cut_zero",
        "tier_without_lora",
        "sfl_cut",
        "num_labels",
    ],
)
def test_model_dependent_errors_are_answered_before_the_model_loads(
    capsys, preflight_only, tiny_llama4_dir, config, extra, arg
):
    assert_refused(capsys, [*config_args(config), *_tiny_model(tiny_llama4_dir), *extra], arg)


def test_a_split_of_an_unsupported_architecture_is_refused_from_config_json(
    capsys, preflight_only, tiny_gpt2_dir
):
    args = [
        *config_args("splitllm.yaml"),
        *_tiny_model(tiny_gpt2_dir),
        "--model.init_args.cut_points=[1,2]",
    ]
    assert_refused(capsys, [*args, "--model.init_args.lora.target_modules=[c_attn]"], "model")


def test_a_missing_gguf_file_lists_the_ones_there(capsys, preflight_only):
    args = [*config_args("quickstart.yaml"), "--model.init_args.gguf_file=nope.gguf"]
    line = assert_refused(capsys, args, "gguf_file")
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in line


@pytest.mark.parametrize(
    ("config", "extra", "arg"),
    [
        ("airllm_hierarchical.yaml", ["--model.init_args.lora.max_rank=4"], "rank_max"),
        ("airllm_fixed_rank8.yaml", ["--model.init_args.lora.max_rank=4"], "policy.init_args.rank"),
        ("quickstart.yaml", ["--model.init_args.client_ranks=[2,16]"], "client_ranks"),
        (
            "soft_tsfa.yaml",
            ["--trainer.callbacks.1.init_args.structural_rank=9"],
            "structural_rank",
        ),
    ],
    ids=["policy_rank_max", "fixed_rank", "client_ranks", "tsfa_structural_rank"],
)
def test_ranks_above_the_lora_allocation_are_refused_before_anything_loads(
    capsys, preflight_only, config, extra, arg
):
    line = assert_refused(capsys, [*config_args(config), *extra], arg)
    assert "max_rank" in line


# -- FSDP and accelerators this machine does not have ---------------------------------------------
NO_GPU = not list(Path("/dev").glob("nvidia[0-9]*"))


@pytest.mark.parametrize(
    "extra",
    [
        ["--trainer.strategy=fsdp"],
        ["--trainer.strategy=fsdp_cpu_offload"],
        ["--trainer.strategy=lightning.pytorch.strategies.FSDPStrategy"],
        pytest.param(
            ["--trainer.strategy=fsdp", "--trainer.accelerator=cuda"],
            marks=pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU"),
        ),
    ],
    ids=["fsdp_on_cpu", "fsdp_cpu_offload", "fsdp_class_path", "fsdp_cuda_without_gpu"],
)
def test_fsdp_on_cpu_says_to_use_ddp(capsys, preflight_only, extra):
    line = assert_refused(capsys, [*config_args("quickstart.yaml"), *extra], "trainer.strategy")
    assert "ddp" in line and "CUDA" in line


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_a_cuda_accelerator_without_a_gpu_is_one_line(capsys, tiny_args):
    assert_refused(capsys, [*tiny_args, "--trainer.accelerator=cuda"], "accelerator")


# -- errors once the run has started keep their traceback ---------------------------------------
class FailsInTraining(Callback):
    """Raises a ``ValueError`` at the first training batch (a bug, not a configuration error)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        raise ValueError("a bug in a training step")


def test_an_error_during_training_keeps_its_traceback(tiny_args, tmp_path):
    args = [
        *tiny_args,
        *_local_files([str(write_corpus(tmp_path))]),
        "--data.init_args.partitioner=lit_airlora.datamodules.IID",
        "--data.init_args.partitioner.init_args.num_clients=4",
        "--data.init_args.clients_per_round=2",
        "--data.init_args.seq_len=32",
        "--data.init_args.local_steps=1",
        "--data.init_args.max_samples_per_client=8",
        "--trainer.callbacks+=tests.test_bad_input.FailsInTraining",
    ]
    with pytest.raises(ValueError, match="a bug in a training step"):
        main(["fit", *args])


# -- what a user sees in a terminal (subprocess: logging handlers included) ---------------------
def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env.pop("LIT_AIRLORA_DEBUG", None)
    command = [sys.executable, "-m", "lit_airlora", "fit", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        (["--model.init_args.lora.alpha", "nan"], "alpha"),  # preflight: no torch import
        (["--model.init_args.bogus=1"], "bogus"),  # the parser: Lightning loaded
    ],
    ids=["preflight", "parser"],
)
def test_a_terminal_sees_one_line(extra, name):
    result = _run([*config_args("quickstart.yaml"), *extra])
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2 and len(lines) <= 3 and name in lines[0], lines
