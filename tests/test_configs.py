"""Every shipped config, composed as its header command says, builds (a tiny model swapped in)."""

from __future__ import annotations

import pytest
from lightning.pytorch import LightningDataModule, LightningModule

from tests.config_helpers import CONFIGS, REPO, composed, header_command
from tests.config_helpers import build_cli as _build

#: System files that change how clients train or the server aggregates (optimizer, local steps,
#: aggregator), not only callbacks.
TRAINING_VARIANTS = ("fedsgd.yaml", "pairzero_fo_sgd.yaml", "flora.yaml", "stacked_clients.yaml")


#: Split-learning systems need a block per tier: the 4-block tiny model and cuts that fit it.
SPLIT_CUTS = {
    "splitllm": ["--model.init_args.cut_points=[1, 3]"],
    "splitllm_wireless": ["--model.init_args.cut_points=[1, 3]"],
    "sfl": ["--model.init_args.cut_point=1"],
}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_builds_from_its_header_command(config, tiny_llama_dir, tmp_path, request):
    model_dir, extra = tiny_llama_dir, []
    if config.stem in SPLIT_CUTS:
        model_dir, extra = request.getfixturevalue("tiny_llama4_dir"), SPLIT_CUTS[config.stem]
    cli = _build(config.name, model_dir, tmp_path, *extra)
    declared = [c["class_path"] for c in composed(config.name)["trainer"]["callbacks"] or []]
    built = [f"{type(c).__module__}.{type(c).__name__}" for c in cli.trainer.callbacks]
    assert all(path in built for path in declared), (declared, built)
    assert isinstance(cli.model, LightningModule)
    assert isinstance(cli.datamodule, LightningDataModule)
    assert cli.trainer.logger.name == config.stem  # runs of different systems never collide


#: Systems on another task: they also change the model's task and the datamodule.
TASK_CONFIGS = {"classification_bbc.yaml"}


def test_system_files_hold_only_what_differs_from_the_base():
    base = header_command("quickstart.yaml")
    assert base == [REPO / "configs" / "quickstart.yaml"]
    for config in CONFIGS:
        files = header_command(config.name)
        assert files[0] == base[0] and files[-1] == config, config.name
        text = config.read_text()
        if config.name in ("quickstart.yaml", *TRAINING_VARIANTS, *TASK_CONFIGS):
            continue
        for section in ("model", "data"):  # only a system on another module or datamodule
            if f"\n{section}:" in text:
                base_class = composed("quickstart.yaml")[section]["class_path"]
                assert composed(config.name)[section]["class_path"] != base_class, config.name


def test_model_and_data_seeds_follow_seed_everything(tiny_llama_dir, tmp_path):
    cli = _build("quickstart.yaml", tiny_llama_dir, tmp_path)
    assert cli.model.hparams.seed == 0 and cli.datamodule.seed == 0
    cli = _build(
        "quickstart.yaml",
        tiny_llama_dir,
        tmp_path,
        "--seed_everything=7",
        "--data.init_args.seed=3",
    )
    assert cli.model.hparams.seed == 7 and cli.datamodule.seed == 3
