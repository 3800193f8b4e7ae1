"""Virtual clients on one base model: swap adapter tensors and optimizer state, build uploads."""

from __future__ import annotations

import torch

from lit_airlora.federated.token_stats import (
    batch_token_stats,
    ignored_ids,
    text_token_mask,
    unknown_token_table,
)
from lit_airlora.federated.upload import Upload
from lit_airlora.rank_blocks import active_rank_mask
from lit_airlora.seeding import round_seed


class ClientTrainer:
    """Runs the clients of a round in turn on the module's single model.

    A client starts from the global adapter (capped to its rank, if heterogeneous), trains, and
    leaves an upload (its update, masked to its active ranks). Only adapter tensors and,
    optionally, optimizer state are swapped; the base model is shared.

    Args:
        module: The ``FederatedLoRAModule`` (its model, masks, optimizer, global adapter).
        client_ranks: Optional per-client rank caps (client ``k`` uses entry ``k % len``).
        keep_optimizer_state: Keep each client's optimizer state across rounds.
    """

    def __init__(self, module, client_ranks: list[int] | None, keep_optimizer_state: bool):
        self.module = module
        check_client_ranks(client_ranks, module.max_rank)
        self.client_ranks = list(client_ranks or [])
        self.keep_optimizer_state = keep_optimizer_state
        self.optimizer_states: dict[int, dict] = {}
        self.unknown_ids = unknown_token_table(module.tokenizer)
        self.ignored_ids = ignored_ids(module.tokenizer, self.unknown_ids)
        self.start_round()

    def start_round(self) -> None:
        self.client: int | None = None
        self.weight = 0.0
        self.uploads: list[Upload] = []
        self.global_ranks = self.module.ranks
        self.loss_sum, self.loss_count = 0.0, 0
        self.skipped_steps = 0
        self.entropy_sum, self.entropy_count = 0.0, 0
        self.unknown_count, self.token_count = 0.0, 0.0

    def switch_to(self, client_id: int, weight: float) -> None:
        """Start ``client_id`` (finishing the previous client) unless it is already running."""
        if client_id == self.client:
            return
        if self.client is not None:
            self._finish_client()
        self.client, self.weight = client_id, weight
        module = self.module
        if module.lora_settings.dropout > 0:
            # Dropout draws from the global generator: seeded per (round, client), a client
            # draws the same masks on whichever DDP rank simulates it.
            torch.manual_seed(round_seed(module.round_plan.seed, client_id))
        _check_client_state(module)
        start = module.aggregator.client_start(client_id, module.global_adapter)
        module.load_adapter(start)
        module.rank_masks.set_ranks(self.client_rank_map(client_id), truncate="none")
        self.restore_optimizer_state(client_id, module.optimizers().optimizer)

    def restore_optimizer_state(self, client_id: int, optimizer: torch.optim.Optimizer) -> None:
        """Clear ``optimizer``'s state, then load ``client_id``'s kept state (when kept)."""
        optimizer.state.clear()
        if self.keep_optimizer_state and client_id in self.optimizer_states:
            _load_optimizer_state(optimizer, self.optimizer_states[client_id])

    def finish_client(self, client_id: int, weight: float, optimizer: torch.optim.Optimizer):
        """Leave the upload of ``client_id``, trained outside ``switch_to`` (stacked clients):
        the live model holds its adapter and its ranks, ``optimizer`` its optimizer state."""
        self.client, self.weight = client_id, weight
        self._finish_client(optimizer)
        self.client = None

    def client_rank_map(self, client_id: int) -> dict[str, int]:
        cap = self.client_ranks[client_id % len(self.client_ranks)] if self.client_ranks else None
        cap = self.module.aggregator.client_rank_cap(client_id, cap)
        if cap is None:
            return dict(self.global_ranks)
        return {name: min(rank, cap) for name, rank in self.global_ranks.items()}

    def observe_loss(self, loss: float) -> None:
        self.loss_sum += loss
        self.loss_count += 1

    def observe_batch(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> None:
        """Token entropy (normalised by log vocabulary size) and unknown tokens of the batch,
        as AirLLM observes (see :mod:`lit_airlora.federated.token_stats`)."""
        mask = text_token_mask(input_ids, attention_mask, self.ignored_ids)
        entropy, unknown, tokens = batch_token_stats(
            input_ids, mask, self.unknown_ids, len(self.module.tokenizer)
        )
        self.entropy_sum += entropy
        self.entropy_count += 1
        self.unknown_count += unknown
        self.token_count += tokens

    def token_sums(self) -> torch.Tensor:
        """``[4]`` float64: entropy sum, batch count, unknown tokens, tokens (to reduce)."""
        values = [self.entropy_sum, self.entropy_count, self.unknown_count, self.token_count]
        return torch.tensor(values, dtype=torch.float64)

    def finish_round(self) -> list[Upload]:
        """Finish the last client and restore the global ranks; returns this rank's uploads."""
        if self.client is not None:
            self._finish_client()
        self.module.rank_masks.set_ranks(self.global_ranks, truncate="none")
        self.client = None
        return self.uploads

    def _finish_client(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        module = self.module
        ranks = dict(module.rank_masks.ranks)
        local = module.read_adapter()
        tensors = {}
        for name, value in local.items():
            if module.aggregator.trainable(name):
                delta = value - module.global_adapter[name]
                tensors[name] = delta * active_rank_mask(name, delta, ranks)
        upload = Upload(self.client, tensors, ranks, self.weight)
        upload = module.aggregator.client_upload(upload, local, module.global_adapter)
        self.uploads.append(upload)
        if self.keep_optimizer_state:
            optimizer = optimizer or module.optimizers().optimizer
            self.optimizer_states[self.client] = _optimizer_state(optimizer)

    def state_dict(self) -> dict:
        return {
            "optimizer_states": self.optimizer_states,
            "aggregator": self.module.aggregator.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer_states = dict(state["optimizer_states"])
        if "aggregator" in state:  # checkpoints from before aggregators kept state have none
            self.module.aggregator.load_state_dict(state["aggregator"])


def _check_client_state(module) -> None:
    """Per-client aggregator state lives in one process; DDP moves clients between ranks."""
    plan = getattr(module, "round_plan", None)
    aggregator = module.aggregator
    if aggregator.has_client_state and plan is not None and plan.world_size > 1:
        raise RuntimeError(
            f"`aggregator` ({type(aggregator).__name__}) keeps per-client state in the process "
            f"that simulates the client, but this run has {plan.world_size} DDP processes and "
            "clients move between them; run it on one process (devices: 1)."
        )


def check_client_ranks(client_ranks: list[int] | None, max_rank: int) -> None:
    for rank in client_ranks or []:
        if not 1 <= rank <= max_rank:
            raise ValueError(f"`client_ranks` entry ({rank}) must be in [1, max_rank={max_rank}].")


def _optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """Detached CPU copy of the per-parameter state (tensors and builtins only)."""
    state = optimizer.state_dict()["state"]
    return {
        int(k): {n: (v.detach().cpu().clone() if torch.is_tensor(v) else v) for n, v in s.items()}
        for k, s in state.items()
    }


def _load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    full = optimizer.state_dict()
    full["state"] = state
    optimizer.load_state_dict(full)
