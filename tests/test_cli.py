"""The CLI: a tiny fit runs end to end from YAML, bad input fails cleanly."""

import pytest
import yaml

from lit_airlora.cli import main
from tests.helpers import write_corpus


def _tiny_config(tmp_path, tiny_llama_dir, **model_overrides):
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path),
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(tmp_path / "runs"), "name": "tiny"},
            },
        },
        "model": {
            "class_path": "lit_airlora.module.FederatedLoRAModule",
            "init_args": {"model": tiny_llama_dir, "lora": {"max_rank": 4}, **model_overrides},
        },
        "data": {
            "class_path": "lit_airlora.datamodules.FederatedTextDataModule",
            "init_args": {
                "source": {
                    "class_path": "lit_airlora.datamodules.LocalFiles",
                    "init_args": {"paths": [str(write_corpus(tmp_path))]},
                },
                "partitioner": {
                    "class_path": "lit_airlora.datamodules.IID",
                    "init_args": {"num_clients": 4},
                },
                "seq_len": 32,
                "batch_size": 2,
                "clients_per_round": 2,
                "local_steps": 1,
            },
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fit_from_yaml_logs_and_exports(tmp_path, tiny_llama_dir, capsys):
    main(["fit", "--config", str(_tiny_config(tmp_path, tiny_llama_dir))])
    out = capsys.readouterr().out
    assert "Exported adapter (peft format)" in out and "Held-out perplexity by round" in out
    assert list((tmp_path / "runs" / "tiny").glob("version_0/events.out.tfevents.*"))
    assert (tmp_path / "runs" / "tiny" / "version_0" / "adapter" / "adapter_config.json").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"lora": {"max_rank": 0}}, r"max_rank` \(0\) must be a positive integer"),
        ({"lora": {"target_modules": ["nope"]}}, r"\['nope'\] match no linear layer"),
        ({"model": "/no/such/model"}, r"model` \(./no/such/model.\) is not an existing folder"),
    ],
)
def test_bad_config_exits_with_a_clear_message(tmp_path, tiny_llama_dir, capsys, override, message):
    import re

    path = _tiny_config(tmp_path, tiny_llama_dir, **override)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path)])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
