"""SplitLLM trains a round end to end from its YAML (header command, tiny model swapped in)."""

import yaml

from lit_airlora.cli import main
from tests.config_helpers import header_command
from tests.helpers import write_corpus


def test_splitllm_config_trains_a_round(tmp_path, tiny_llama4_dir, capsys):
    overlay = {
        "trainer": {"max_epochs": 1, "logger": False, "default_root_dir": str(tmp_path)},
        "model": {"init_args": {"model": tiny_llama4_dir, "gguf_file": None, "cut_points": [1, 3]}},
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
    configs = [a for p in header_command("splitllm.yaml") for a in ("--config", str(p))]
    main(["fit", *configs, "--config", str(path), "--trainer.enable_progress_bar=false"])
    out = capsys.readouterr().out
    assert "Exported adapter (peft format)" in out and "Held-out perplexity by round" in out
