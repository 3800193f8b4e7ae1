"""The local optimizer from YAML: FedSGD uploads the gradient; clipping follows callback terms."""

from __future__ import annotations

import functools

import lightning as L
import torch

from lit_airlora.lora.layers import parameter_of
from tests.helpers import tiny_fit


class GradientRecorder(L.Callback):
    """Records every LoRA gradient just before the step (optionally adds a large term first)."""

    def __init__(self, extra: float = 0.0) -> None:
        self.extra, self.grads = extra, {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        for name in pl_module.global_adapter:
            param = parameter_of(pl_module.lora_layers, name)
            if param.grad is not None:
                param.grad.add_(self.extra)  # like SOFT's orthogonality gradient
        client = pl_module.clients.client
        self.grads[client] = {
            n: parameter_of(pl_module.lora_layers, n).grad.detach().clone()
            for n in pl_module.global_adapter
        }


def test_fedsgd_upload_is_the_gradient_and_clipping_follows_callback_terms(
    tmp_path, tiny_llama_dir, tokenizer
):
    sgd = functools.partial(torch.optim.SGD, lr=1.0)
    recorder = GradientRecorder()
    _, module = tiny_fit(
        tmp_path / "fedsgd", tiny_llama_dir, tokenizer, max_epochs=1, callbacks=[recorder],
        module_kwargs={"optimizer": sgd, "gradient_clip_val": None},
        data_kwargs={"local_steps": 1},
    )  # fmt: skip
    assert isinstance(module.optimizers().optimizer, torch.optim.SGD)
    assert module.clients.uploads
    for upload in module.clients.uploads:
        for name, value in upload.tensors.items():
            torch.testing.assert_close(value, -recorder.grads[upload.client_id][name])
    # A callback's gradient term (here +0.5 on every entry, norm >> 1) is clipped with the rest.
    _, module = tiny_fit(
        tmp_path / "clip", tiny_llama_dir, tokenizer, max_epochs=1,
        callbacks=[GradientRecorder(extra=0.5)],
        module_kwargs={"optimizer": sgd, "gradient_clip_val": 1.0},
        data_kwargs={"local_steps": 1},
    )  # fmt: skip
    for upload in module.clients.uploads:
        norm = torch.cat([t.flatten() for t in upload.tensors.values()]).norm()
        assert float(norm) <= 1.0 + 1e-4
