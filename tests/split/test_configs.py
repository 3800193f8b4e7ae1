"""The split configs build their module, datamodule and links (tiny model swapped in), and
SplitLLM trains a round end to end from YAML."""

from pathlib import Path

import pytest
import yaml

from lit_airlora.cli import TRAINER_DEFAULTS, AirLoRACLI, main
from tests.helpers import write_corpus

CONFIGS = Path(__file__).parents[2] / "configs"


def _overlay(tmp_path, model_dir, sfl: bool) -> Path:
    cut = {"cut_point": 1} if sfl else {"cut_points": [1, 3]}
    overlay = {
        "trainer": {
            "max_epochs": 1,
            "logger": False,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path),
        },
        "model": {"init_args": {"model": model_dir, "gguf_file": None, **cut}},
        "data": {
            "init_args": {
                "source": {
                    "class_path": "lit_airlora.datamodules.LocalFiles",
                    "init_args": {"paths": [str(write_corpus(tmp_path))]},
                },
                "partitioner": {
                    "class_path": "lit_airlora.datamodules.IID",
                    "init_args": {"num_clients": 10},
                },
                "seq_len": 32,
                "batch_size": 2,
                "local_steps": 1,
            }
        },
    }
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


@pytest.mark.parametrize("name", ["splitllm.yaml", "splitllm_wireless.yaml", "sfl.yaml"])
def test_split_configs_instantiate(tmp_path, tiny_llama4_dir, name):
    from lightning.pytorch import LightningDataModule, LightningModule

    overlay = _overlay(tmp_path, tiny_llama4_dir, sfl=name == "sfl.yaml")
    cli = AirLoRACLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        run=False,
        args=["--config", str(CONFIGS / name), "--config", str(overlay)],
    )
    assert len(cli.model.specs) == (2 if name == "sfl.yaml" else 3)
    assert cli.datamodule.num_edges == (None if name == "sfl.yaml" else 2)


def test_splitllm_config_trains_a_round(tmp_path, tiny_llama4_dir, capsys):
    overlay = _overlay(tmp_path, tiny_llama4_dir, sfl=False)
    main(["fit", "--config", str(CONFIGS / "splitllm.yaml"), "--config", str(overlay)])
    out = capsys.readouterr().out
    assert "Exported adapter (peft format)" in out and "Held-out perplexity by round" in out
