"""configs/classification_bbc.yaml builds and runs a round on BBC News (tiny model swapped in)."""

from lit_airlora.cli import main
from tests.config_helpers import header_command


def test_bbc_config_runs_a_round(tmp_path, tiny_llama_dir, capsys):
    main(
        [
            "fit",
            *[
                a
                for path in header_command("classification_bbc.yaml")
                for a in ("--config", str(path))
            ],
            f"--model.init_args.model={tiny_llama_dir}",
            "--model.init_args.gguf_file=null",
            "--data.init_args.max_samples_per_client=6",
            "--data.init_args.seq_len=32",
            "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )
    out = capsys.readouterr().out
    assert "Held-out accuracy by round:" in out and "Exported adapter" in out
    exported = next(tmp_path.glob("classification_bbc/version_0/adapter/adapter_model.safetensors"))
    from safetensors.torch import load_file

    assert load_file(str(exported))["base_model.model.score.weight"].shape == (5, 64)
