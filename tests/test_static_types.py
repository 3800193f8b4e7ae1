"""The preflight's signature checks (source read with ``ast``) against the real parser.

The checks must answer parser-type mistakes (unknown argument, wrong type, missing class)
without importing torch or Lightning, and must never refuse what the LightningCLI parser
accepts: every case below also goes through the parser (one parser, built once), which is the
oracle.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from lit_airlora.cli.preflight import preflight
from lit_airlora.cli.signatures import resolve_class_path, signature
from lit_airlora.errors import ConfigError
from tests.bad_input_helpers import config_args
from tests.config_helpers import CONFIGS, REPO

QUICKSTART = config_args("quickstart.yaml")
SOFT = "lit_airlora.callbacks.soft.SOFT"

# Overrides of the quickstart the parser refuses: the preflight must refuse them too.
REFUSED = [
    "--model.init_args.bogus=1",
    "--model.init_args.learning_rat=0.1",
    "--model.init_args.keep_client_optimizer_state=maybe",
    "--model.init_args.keep_client_optimizer_state=1",
    "--model.init_args.seed=1.5",
    "--data.init_args.partitioner.init_args.num_clients=eight",
    "--model.init_args.client_ranks=4",
    "--model.init_args.client_ranks=[4, x]",
    "--model.init_args.aggregator=lit_airlora.federated.aggregators.Nope",
    "--model.init_args.aggregator=no_such_package.Aggregator",
    "--data.init_args.partitioner.init_args.bogus=3",
    "--data.init_args.source.init_args.plays=hamlet",
    "--data.init_args.num_workers=some",
    "--trainer.max_epochs=x",
    "--trainer.max_epoc=x",
    "--trainer.max_epochz=3",
    "--trainer.enable_progress_bar=perhaps",
    f"--trainer.callbacks=[{{class_path: {SOFT}, init_args: {{rhoo: 0.1}}}}]",
    f"--trainer.callbacks=[{{class_path: {SOFT}, init_args: {{log_covariance: x}}}}]",
    f"--trainer.callbacks=[{{class_path: {SOFT}, init_args: {{rho: high}}}}]",
]
# Overrides the parser accepts: the preflight must accept them.
ACCEPTED = [
    "--trainer.logger=false",
    "--trainer.precision=bf16-mixed",
    "--trainer.max_time=00:00:10:00",
    "--trainer.devices=1",
    "--trainer.max_epoch=3",  # argparse takes a unique prefix on the command line
    "--model.init_args.seed=null",
    "--model.init_args.seed=3",
    "--model.init_args.export_dir=5",
    "--model.init_args.gguf_file=null",
    "--model.init_args.learning_rate=1e-3",
    "--model.init_args.keep_client_optimizer_state=true",
    "--model.init_args.lora.target_modules=[q_proj]",
    "--model.init_args.aggregator=lit_airlora.federated.aggregators.FFALoRA",
    "--model.init_args.optimizer=torch.optim.SGD",
    "--data.init_args.partitioner.init_args.num_clients=6",
    f"--trainer.callbacks=[{{class_path: {SOFT}, init_args: {{rho: 0.1}}}}]",
]


@pytest.fixture(scope="module")
def parser():
    """The LightningCLI parser of ``lit-airlora fit`` (no class is built)."""
    from lightning.pytorch import LightningDataModule, LightningModule

    from lit_airlora.cli.app import TRAINER_DEFAULTS, _ParseOnlyCLI

    cli = _ParseOnlyCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        run=False,
        args=QUICKSTART,
    )
    return cli.parser


def _parser_refuses(parser, extra: str) -> bool:
    try:
        parser.parse_args([*QUICKSTART, extra])
    except Exception:  # the parser raises ArgumentError (exit_on_error=False)
        return True
    return False


def _preflight_refuses(extra: str) -> str | None:
    try:
        preflight(["fit", *QUICKSTART, extra])
    except ConfigError as err:
        return str(err)
    return None


def test_preflight_refuses_what_the_parser_refuses_and_accepts_the_rest(parser):
    for extra in REFUSED:
        assert _parser_refuses(parser, extra), f"the oracle accepts {extra}"
        message = _preflight_refuses(extra)
        argument = extra.split("=")[0].rsplit(".", 1)[-1]
        assert message is not None, f"preflight accepted {extra}"
        assert "\n" not in message and (argument in message or "rhoo" in message), message
    for extra in ACCEPTED:
        assert not _parser_refuses(parser, extra), f"the oracle refuses {extra}"
        assert _preflight_refuses(extra) is None, extra


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_passes_the_signature_checks(config):
    preflight(["fit", *config_args(config.name)])


def test_messages_name_the_argument_the_value_and_a_fix():
    assert _preflight_refuses("--trainer.max_epochz=3") == (
        "`trainer.max_epochz`: Trainer has no argument `max_epochz`; did you mean `max_epochs`?"
    )
    assert _preflight_refuses("--model.init_args.seed=1.5") == (
        "`model.init_args.seed` (1.5) must be an integer or null."
    )
    missing = _preflight_refuses("--model.init_args.aggregator=lit_airlora.federated.Nope")
    assert missing.startswith("`model.init_args.aggregator` ('lit_airlora.federated.Nope'): no ")


def test_signatures_follow_reexports_dataclasses_and_kwargs():
    corpus = resolve_class_path("lit_airlora.datamodules.ShakespeareCorpus")
    assert corpus.module == "lit_airlora.datamodules.sources.shakespeare"
    lora = signature(resolve_class_path("lit_airlora.lora.config.LoRASettings"))
    assert {"max_rank", "alpha", "target_modules"} <= set(lora.parameters) and not lora.open
    logger = signature(resolve_class_path("lightning.pytorch.loggers.TensorBoardLogger"))
    assert logger.open and "save_dir" in logger.parameters  # **kwargs: any key may be valid


def test_signature_checks_import_neither_torch_nor_lightning():
    args = ["fit", *QUICKSTART, "--config", str(REPO / "configs" / "soft_tsfa.yaml")]
    code = (
        "import sys; from lit_airlora.cli.preflight import preflight; "
        f"preflight({args!r}); "
        "heavy = [m for m in ('torch', 'lightning', 'transformers') if m in sys.modules]; "
        "print(heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
