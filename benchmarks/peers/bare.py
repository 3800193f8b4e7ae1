"""The bare PyTorch + peft loop: FedAvg of LoRA written out by hand, nothing from the module.

Its own peft model and AdamW, adapters swapped with peft's state-dict helpers, batches drawn
from the data loader inside the timed region (as Lightning draws them), FedAvg weighted by the
clients' sizes, held-out perplexity after every round.
"""

from __future__ import annotations

import time

from task import (
    MODEL,
    TaskSettings,
    build_datamodule,
    heldout_perplexity,
    local_step,
    peft_lora_model,
)


def run(task: TaskSettings, queue) -> None:
    """Train ``task.rounds`` rounds; put the round-end times and perplexities on ``queue``."""
    import torch

    from lit_airlora.models import load_tokenizer

    torch.set_num_threads(task.threads)
    model = peft_lora_model(task)
    datamodule = build_datamodule(task, load_tokenizer(MODEL["model"], MODEL["gguf_file"]))
    val_loader = datamodule.val_dataloader()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=task.learning_rate, weight_decay=0.0)
    perplexity = [heldout_perplexity(model, val_loader)]
    round_end = [time.time()]
    for round_idx in range(task.rounds):
        loader = datamodule.train_dataloader()
        loader.batch_sampler.set_epoch(round_idx)
        fedavg_round(model, optimizer, loader)
        perplexity.append(heldout_perplexity(model, val_loader))
        round_end.append(time.time())
    queue.put({"round_end": round_end, "perplexity": perplexity})


def fedavg_round(model, optimizer, loader) -> None:
    """Each client trains from the global adapter in turn; the server takes the weighted mean."""
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    def adapter_copy() -> dict:  # peft's state dict shares storage with the live parameters
        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}

    model.train()
    global_state = adapter_copy()
    adapters, weights, client = [], [], None
    for batch in loader:  # client after client
        if int(batch["client_id"][0]) != client:
            if client is not None:
                adapters.append(adapter_copy())
            client = int(batch["client_id"][0])
            weights.append(float(batch["client_weight"][0]))
            set_peft_model_state_dict(model, global_state)
            optimizer.state.clear()
        local_step(model, optimizer, batch)
    adapters.append(adapter_copy())
    shares = torch.tensor(weights) / sum(weights)
    mean = {
        name: sum(share * adapter[name] for share, adapter in zip(shares, adapters, strict=True))
        for name in global_state
    }
    set_peft_model_state_dict(model, mean)
