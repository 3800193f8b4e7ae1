"""Remote-link mode: stage callbacks in a plain LightningModule holding a peft LoRA model."""

import pytest
import torch

from lit_airlora.callbacks.remote_link import RemoteLinkMixin
from lit_airlora.lora.layers import adapter_tensors, find_lora_layers
from tests.helpers import fit_plain


class AddOne(RemoteLinkMixin):
    """A stand-in channel: the server receives every value plus one."""

    stage = "transmit"
    aggregates = True

    def __init__(self, remote_mode):
        self.remote_mode = remote_mode

    def on_upload_transmit(self, trainer, pl_module, ctx):
        ctx.aggregate = {n: t + 1.0 for n, t in ctx.uploads[0].tensors.items()}


@pytest.mark.parametrize("mode", ["replace", "shadow"])
def test_received_adapter_replaces_or_shadows_the_trained_one(tmp_path, mode):
    _, module = fit_plain(tmp_path, [AddOne(mode)], max_epochs=1)
    final = adapter_tensors(find_lora_layers(module))
    validated = module.seen_in_validation[-1]
    for name, value in final.items():
        if mode == "replace":  # the model now holds the received adapter, and validated it
            torch.testing.assert_close(validated[name], value)
        else:  # validation saw trained + 1; the model kept the trained adapter
            torch.testing.assert_close(validated[name], value + 1.0)
