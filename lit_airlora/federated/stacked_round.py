"""A round whose clients step together (``stacked_clients: true``): this rank's batches are
kept as the loader yields them, client after client, and its clients train at the round's last
batch, their j-th local steps in one forward/backward (:class:`ClientStack`).

The loader, the round plan, the step counter and the uploads are those of the sequential loop;
only when the local steps run changes. What the stacked step does not compute is refused
before training (:func:`check_stacked_module`, :func:`check_stacked_fit`).
"""

from __future__ import annotations

from lightning.pytorch import Callback

from lit_airlora.errors import ConfigError
from lit_airlora.federated.client_stack import ClientStack
from lit_airlora.lora.stacked import check_routable
from lit_airlora.tasks import CausalLM

#: Callback hooks the sequential loop runs around every client's step and a stacked step cannot.
_PER_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


class StackedRound:
    """Keeps this rank's batches of the round, then trains its clients together.

    Args:
        module: The ``FederatedLoRAModule`` (its model, clients, round plan and optimizer).
    """

    def __init__(self, module) -> None:
        self.module = module
        self.batches: dict[int, list[dict]] = {}

    def start_round(self) -> None:
        self.batches = {}

    def add(self, batch: dict, client: int) -> None:
        """Keep ``client``'s next batch (it trains at the round's end)."""
        if int(batch["client_id"][0]) != client:
            raise RuntimeError(
                f"Batch of client {int(batch['client_id'][0])} where the round plan schedules "
                f"client {client}: the train loader must follow the datamodule's RoundSchedule."
            )
        self.batches.setdefault(client, []).append(batch)

    def train(self) -> None:
        """Train the kept clients step by step together and leave their uploads."""
        module, clients = self.module, self.module.clients
        if not self.batches:  # an idle shard (or a round cut before this rank's clients)
            return
        order = list(self.batches)
        stack = self._stack(order)
        steps = max((len(b) for b in self.batches.values()), default=0)
        with module._no_grad_sync():
            for j in range(steps):
                batches = [self.batches[c][j] if j < len(self.batches[c]) else None for c in order]
                for result in stack.step(batches):
                    if result is None:
                        continue
                    if result.stepped:
                        clients.observe_loss(float(result.task_loss))
                    else:
                        clients.skipped_steps += 1
        for slot, client in enumerate(order):
            module.load_adapter(stack.adapter(slot))
            module.rank_masks.set_ranks(stack.ranks[slot], truncate="none")
            weight = module.round_plan.client_weights[client]
            clients.finish_client(client, weight, stack.optimizers[slot])
        self.batches = {}

    def _stack(self, order: list[int]) -> ClientStack:
        module, clients = self.module, self.module.clients
        stack = ClientStack(
            module.model,
            module.lora_layers,
            starts=[module.aggregator.client_start(c, module.global_adapter) for c in order],
            ranks=[clients.client_rank_map(c) for c in order],
            trained=trained_names(module),
            make_optimizer=module.build_optimizer,
            max_norm=module.hparams.gradient_clip_val,
            backward=module.manual_backward,
        )
        for slot, client in enumerate(order):
            clients.restore_optimizer_state(client, stack.optimizers[slot])
        return stack


def trained_names(module) -> list[str]:
    """Names of the module's trained tensors in its optimizer's order (LoRA factors only)."""
    names = {}
    for name, factors in module.lora_layers.items():
        names[id(factors.lora_A)] = f"{name}.lora_A"
        names[id(factors.lora_B)] = f"{name}.lora_B"
    return [names[id(p)] for p in module._trainable]


def check_stacked_module(module) -> None:
    """Refuse (one line, at construction) the options a stacked step does not compute."""
    settings = module.lora_settings
    problem = None
    if module.zeroth_order is not None:
        problem = "`zeroth_order` is set (zeroth-order steps take no backward pass)"
    elif type(module.task) is not CausalLM:
        problem = f"`task` is {type(module.task).__name__} (its loss is not split by client)"
    elif settings.svd_form:
        problem = "`lora.svd_form` is true (singular values and their penalty are not routed)"
    elif settings.dropout > 0:
        problem = f"`lora.dropout` is {settings.dropout} (each client's masks are seeded apart)"
    elif settings.bias != "none":
        problem = f"`lora.bias` is {settings.bias!r} (biases are shared by all rows)"
    if problem is not None:
        raise ValueError(
            f"`stacked_clients` (true) trains plain causal-LM LoRA factors, but {problem}: "
            "change that or set `stacked_clients: false`."
        )


def check_stacked_model(module) -> None:
    """Refuse (one line, once the model is built) layers or heads a stacked step cannot route."""
    check_routable(module.lora_layers)
    if module.head_parameters:
        head = next(iter(module.head_parameters))
        raise ValueError(
            f"`stacked_clients` (true) routes LoRA factors only; `{head}` is trained whole "
            "(a head or bias): set `stacked_clients: false`."
        )


def check_stacked_fit(trainer) -> None:
    """Refuse (one line, at setup) the trainer and callbacks a stacked round cannot honour."""
    if trainer.world_size > 1:
        raise ConfigError(
            f"`stacked_clients` (true) runs on one process; this run has {trainer.world_size} "
            "(`devices`/`num_nodes`): set `devices: 1` or `stacked_clients: false`."
        )
    if str(trainer.precision) == "16-mixed":
        raise ConfigError(
            "`precision` ('16-mixed') scales the loss for Lightning's optimizer step, which "
            "stacked clients do not take: use 32 or 'bf16-mixed', or `stacked_clients: false`."
        )
    for callback in trainer.callbacks:
        hook = next((h for h in _PER_STEP_HOOKS if _overrides(callback, h)), None)
        if hook is not None:
            raise ConfigError(
                f"`stacked_clients` (true) takes no per-client `{hook}` step, which the "
                f"callback {type(callback).__name__} needs: set `stacked_clients: false`."
            )


def _overrides(callback, hook: str) -> bool:
    return getattr(type(callback), hook, None) is not getattr(Callback, hook)
