"""The federated LoRA LightningModule: one epoch is one communication round."""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any, NamedTuple

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lit_airlora.errors import ConfigError
from lit_airlora.federated.aggregators import Aggregator, FedIT
from lit_airlora.federated.clients import ClientTrainer, check_client_ranks
from lit_airlora.federated.collectives import reduce_sum
from lit_airlora.federated.flora import MERGE_SUFFIX, merged_deltas
from lit_airlora.federated.ledger import CommLedger
from lit_airlora.federated.plan import RoundPlan, build_round_plan
from lit_airlora.federated.round import (
    apply_update,
    build_context,
    run_stages,
    skipped_context,
)
from lit_airlora.federated.round_zero_cache import RoundZeroEntry, look_up, write_metrics
from lit_airlora.federated.stacked_round import (
    StackedRound,
    check_stacked_fit,
    check_stacked_model,
    check_stacked_module,
)
from lit_airlora.federated.stages import StageDriver, check_stage_callbacks, dispatch
from lit_airlora.federated.trainer_checks import check_trainer
from lit_airlora.hparams import factory_from_hparam, from_hparam, store_hparams
from lit_airlora.lora.config import LoRASettings, wrap_lora
from lit_airlora.lora.export import export_merged_adapter, export_peft_adapter
from lit_airlora.lora.inputs import lora_from_any, lora_hparams
from lit_airlora.lora.layers import (
    adapter_tensors,
    find_head_parameters,
    find_lora_layers,
    load_adapter_tensors,
)
from lit_airlora.lora.masks import RankMasks
from lit_airlora.lora.merge import base_weight, fresh_factors, merge_into_base
from lit_airlora.lora.state import check_state_keys
from lit_airlora.lora.svd_form import orthogonality_penalty
from lit_airlora.models import load_tokenizer, resolve_model_path
from lit_airlora.seeding import make_generator, resolve_seed
from lit_airlora.tasks import CausalLM, Task
from lit_airlora.zeroth_order.local_update import ZerothOrder

log = logging.getLogger(__name__)

#: Key mixed into the round seed for the adapter re-initialised after a merge (FLoRA).
_RESTART_STREAM = 0xF10A


class FederatedLoRAModule(LightningModule, StageDriver):
    """Federated LoRA fine-tuning of an LLM over virtual clients, for a causal-LM or
    classification ``task``.

    One frozen base model; each round the sampled clients train in turn from the global adapter
    (only adapter tensors are swapped), each client's update becomes an ``Upload``, and the
    upload stages (encode -> transmit -> aggregate, see ``lit_airlora.federated.stages``) turn
    them into the server's aggregate, which updates the global adapter (FedAvg, McMahan et al.,
    AISTATS 2017, on LoRA factors). Ranks are masks over a ``max_rank`` allocation. A task's
    trainable head (sequence classification) is federated with the adapter: its deltas are
    uploaded whole, averaged, counted in the ledger and exported with the adapter.

    Args:
        model: Hub id, local folder, or ``"pypi:<package>"`` (a model shipped in a package).
        gguf_file: GGUF file inside ``model`` (dequantised once and cached as safetensors).
        cache_dir: Where to cache a dequantised GGUF model (default: ``~/.cache/lit_airlora``).
        task: What is fine-tuned: ``CausalLM()`` (default) or ``SequenceClassification``.
        lora: LoRA settings (target modules, max_rank, rank, alpha, dropout, rslora, bias,
            exclude_modules, svd_form), or a peft ``LoraConfig`` (Python) or its ``to_dict()``
            form (YAML, with ``peft_type: LORA``), used as given with ``r`` as the max rank.
            Biases trained by ``bias`` are federated whole, like a classification head.
        aggregator: Server aggregation (``FedIT``, ``FFALoRA``, ``HeteroFL``, ``HetLoRA``,
            ``FedSALoRA``, ``FLoRA``). FLoRA's stacked products are merged into the frozen
            base weights (checkpointed with the adapter) and the adapter restarts each round.
        client_ranks: Optional rank cap per client (client ``k`` uses entry ``k % len``), for
            heterogeneous-rank federations (HetLoRA).
        learning_rate: Learning rate of the default local optimizer (AdamW).
        weight_decay: Weight decay of the default local optimizer (AdamW).
        optimizer: Local optimizer, built on the trained LoRA factors (in YAML a ``class_path``
            such as ``torch.optim.SGD`` with its ``init_args``; ``None``: AdamW with
            ``learning_rate`` and ``weight_decay``). FedSGD is ``torch.optim.SGD`` with
            ``lr: 1.0`` and one local step: the upload is then minus the (clipped) gradient
            and ``server_learning_rate`` is the step size (McMahan et al., AISTATS 2017).
        gradient_clip_val: Max gradient norm of local steps (``None``: no clipping), applied
            after every callback's gradient term (SOFT's orthogonality regulariser).
        server_learning_rate: Scale of the aggregate update applied to the global adapter.
        keep_client_optimizer_state: Keep each client's optimizer state across rounds (it is
            checkpointed); by default it is reset when a client starts its round.
        export_dir: Where to export the final adapter (default: ``<log_dir>/adapter``).
        adapter_name: Name of the peft adapter in the model (exported as peft's default).
        seed: Seed of the round's shared randomness (channel noise, client-side draws);
            ``None``: the run's ``seed_everything`` seed.
        zeroth_order: Train with zeroth-order local updates instead of the optimizer (pAirZero:
            clients upload projected-gradient scalars, no backward pass, no optimizer state; see
            :class:`~lit_airlora.zeroth_order.local_update.ZerothOrder`). Needs ``FedIT``.
        cache_round0_metrics: Reuse the round-0 validation metrics of an earlier run with the
            same model files, initial adapter, hyperparameters, validation batches, precision
            and library versions instead of validating again (single-process runs; see
            :mod:`lit_airlora.federated.round_zero_cache`). ``False``: always validate.
        stacked_clients: Train the round's clients together: their j-th local steps run in one
            forward/backward, each client's LoRA factors applied to its own rows (see
            :mod:`lit_airlora.federated.stacked_round`); the same results as the clients in
            turn, to float summation order. Single-process, plain causal-LM LoRA without
            dropout; other options are refused before training.
    """

    #: Attributes ``configure_model`` creates; asking for one first builds the model.
    built_with_the_model: frozenset[str] = frozenset(
        {"model", "lora_layers", "head_parameters", "rank_masks", "global_adapter", "clients"}
        | {"_trainable", "original_weights"}
    )

    def __init__(
        self,
        model: str,
        gguf_file: str | None = None,
        cache_dir: str | None = None,
        task: Task | None = None,
        lora: LoRASettings | dict[str, Any] | None = None,
        aggregator: Aggregator | None = None,
        client_ranks: list[int] | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: OptimizerCallable | None = None,
        gradient_clip_val: float | None = 1.0,
        server_learning_rate: float = 1.0,
        keep_client_optimizer_state: bool = False,
        export_dir: str | None = None,
        adapter_name: str = "default",
        seed: int | None = None,
        zeroth_order: ZerothOrder | None = None,
        cache_round0_metrics: bool = True,
        stacked_clients: bool = False,
    ) -> None:
        super().__init__()
        # Objects become builtins below (store_hparams): load_from_checkpoint needs nothing else.
        self.save_hyperparameters()
        self.hparams.seed = resolve_seed(seed)
        _check_positive(learning_rate=learning_rate, server_learning_rate=server_learning_rate)
        _check_nonnegative(weight_decay=weight_decay, gradient_clip_val=gradient_clip_val)
        self.optimizer_factory = factory_from_hparam(optimizer, torch.optim.Optimizer, "optimizer")
        self.task = from_hparam(task, Task, "task") or CausalLM()
        self.lora_settings, self.peft_config = lora_from_any(lora)
        if not (isinstance(adapter_name, str) and adapter_name.isidentifier()):
            raise ValueError(
                f"`adapter_name` ({adapter_name!r}) must be a name like 'default' (letters, "
                "digits and underscores)."
            )
        self.adapter_name = adapter_name
        self.aggregator = from_hparam(aggregator, Aggregator, "aggregator") or FedIT()
        self.zeroth_order = _check_zeroth_order(
            from_hparam(zeroth_order, ZerothOrder, "zeroth_order"), self
        )
        store_hparams(
            self,
            task=self.task,
            lora=lora_hparams(self.lora_settings, self.peft_config),
            aggregator=self.aggregator,
            optimizer=optimizer,
            zeroth_order=self.zeroth_order,
        )
        check_client_ranks(client_ranks, self.lora_settings.max_rank)
        _check_merging(self.aggregator, self.lora_settings)
        resolve_model_path(model)  # a missing folder or package fails here, before any loading
        # What configure_model needs, apart from hparams (subclasses may not expose these).
        self._source = ModelSource(model, gguf_file, cache_dir)
        self._client_options = (client_ranks, keep_client_optimizer_state)
        self._tokenizer = None
        # The build draws (LoRA's A, a fresh head) from the random state at construction, so
        # what runs before configure_model (callbacks, DDP's re-seeding) cannot change them.
        self._build_rng_state = torch.get_rng_state()
        self.automatic_optimization = False
        self.ledger = CommLedger()
        self.val_metrics = self.task.metrics()
        self.last_metrics: dict[str, float] = {}
        self.round_metrics: dict[str, float] = {}
        self.history: list[float] = []  # the task's headline metric, round 0 first
        self.exported_adapter_dir: Path | None = None
        self.round_plan: RoundPlan | None = None
        self.skipping_round = False
        self._scoring_round_zero = False
        if not isinstance(cache_round0_metrics, bool):
            raise TypeError(
                f"`cache_round0_metrics` ({cache_round0_metrics!r}) must be true or false."
            )
        self.cache_round0_metrics = cache_round0_metrics
        self._round_zero: RoundZeroEntry | None = None
        self.stacked_round = _stacked_round(stacked_clients, self)

    # -- building the model (Lightning's configure_model, or on first use) ----------------------
    @property
    def tokenizer(self):
        """The model's tokenizer, loaded on first use (the datamodule asks before the model)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(*self._source)
        return self._tokenizer

    @override
    def configure_model(self) -> None:
        """Load the base model and wrap it with the max-rank adapter (once).

        Lightning calls this inside its init contexts (device, precision, FSDP sharding), after
        the ``setup`` hooks; transformers builds the model on the meta device and then loads the
        weights into it. A module used without a Trainer (or asked for its model earlier, e.g.
        by a callback's ``setup``) builds on first access to ``model`` or the adapter state.
        Random initialisations draw from the random state the module was constructed in (the
        global stream itself is left as it was), so the initial adapter is the same whenever,
        and on whichever DDP rank, the model is built.
        """
        if "model" in self._modules:
            return
        self.__dict__["_building"] = True
        try:
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(self._build_rng_state)
                self._build_model()
        finally:
            self.__dict__.pop("_building", None)

    def _build_model(self) -> None:
        base = self.task.load_model(*self._source, self.tokenizer)
        name, settings = self.adapter_name, self.lora_settings
        self.model = wrap_lora(base, settings, self.task.peft_task_type, self.peft_config, name)
        self.model.train()  # from_pretrained returns eval mode; Lightning toggles it from here
        self.lora_layers = find_lora_layers(self.model, name)
        self.head_parameters = find_head_parameters(self.model, name)
        self.rank_masks = RankMasks(self.model, name, rank=settings.initial_rank)
        self._freeze_untrained()
        self._trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.global_adapter = self.read_adapter()
        self.original_weights = self._original_weights()
        self.clients = ClientTrainer(self, *self._client_options)
        if self.stacked_round is not None:
            check_stacked_model(self)
        if self.zeroth_order is not None:
            trained = [p for f in self.lora_layers.values() for p in (f.lora_A, f.lora_B)]
            self.zeroth_order.bind(self.model, trained + list(self.head_parameters.values()))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # submodules (``model``) live in ``_modules``
        except AttributeError:
            if name not in self.built_with_the_model or self.__dict__.get("_building"):
                raise
        self.configure_model()
        return super().__getattr__(name) if name == "model" else self.__dict__[name]

    @override
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load, exempting only the frozen base weights from ``strict`` (they are not saved)."""
        self.configure_model()
        if strict:
            check_state_keys(self._saved_keys(), set(state_dict), type(self).__name__)
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    def check_checkpoint(self, checkpoint: dict, path: str) -> None:
        """Refuse (one line) a checkpoint that is not one of this module's."""
        if "federation" not in checkpoint:
            raise ConfigError(
                f"`--ckpt_path` ({path!r}) was not written by {type(self).__name__} (no "
                "federation state): give a checkpoint of this module."
            )

    # -- rank-mask API -------------------------------------------------------------------------
    @property
    def max_rank(self) -> int:
        return self.rank_masks.max_rank

    @property
    def ranks(self) -> dict[str, int]:
        """Active rank per adapted module (global; clients may be capped lower)."""
        return dict(self.rank_masks.ranks)

    def set_ranks(self, ranks: dict[str, int] | int, truncate: str = "importance") -> None:
        """Set global ranks between rounds (an int sets every module); see ``RankMasks``."""
        if isinstance(ranks, int):
            ranks = dict.fromkeys(self.lora_layers, ranks)
        self.load_adapter(self.global_adapter)
        self.rank_masks.set_ranks(ranks, truncate=truncate)
        self.global_adapter = self.read_adapter()

    def read_adapter(self) -> dict[str, torch.Tensor]:
        """Float32 copies of the live LoRA factors and head parameters (the federated tensors)."""
        return adapter_tensors(self.lora_layers, self.head_parameters)

    def load_adapter(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy federated tensors (LoRA factors, head) into the live model."""
        load_adapter_tensors(self.lora_layers, tensors, self.head_parameters)

    @property
    def perplexity_history(self) -> list[float]:
        """Held-out perplexity before round 1 and after each round (causal-LM task)."""
        return list(self.history) if self.task.headline_metric == "val/perplexity" else []

    def skip_round_training(self) -> None:
        """Skip the current round: no local steps, no uploads, zero bits in the ledger.

        Called by a rank policy from ``on_round_start`` when the round is infeasible (AirLLM:
        the payload exceeds the link's capacity budget). Every DDP rank must call it alike.
        """
        self.skipping_round = True

    def observe(self) -> dict[str, float]:
        """Training state for policies and controllers (last round's metrics)."""
        return {"round": float(self.current_epoch), **self.last_metrics}

    # -- Lightning hooks -----------------------------------------------------------------------
    @override
    def configure_optimizers(self):
        if self.zeroth_order is not None:
            return None  # zeroth-order updates keep no optimizer state
        return self.build_optimizer(self._trainable)

    def build_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        """The local optimizer over ``params`` (the trained tensors, in ``_trainable`` order)."""
        if self.optimizer_factory is not None:
            return self.optimizer_factory(params)
        return torch.optim.AdamW(
            params, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )

    @override
    def setup(self, stage: str) -> None:
        check_stage_callbacks(self.trainer.callbacks)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            self.task.check_data(datamodule)
        if stage == "fit":
            check_trainer(self.trainer)
            if self.stacked_round is not None:
                check_stacked_fit(self.trainer)
            # Round 0's plan (before Lightning sizes the epoch), for callbacks' checks at fit
            # start; every round publishes its own at its start.
            self.round_plan = self._plan_round()

    @override
    def on_before_optimizer_step(self, optimizer) -> None:
        # Lightning runs the callbacks' hook first: clip the gradient they completed.
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.gradient_clip_val)

    @override
    def on_train_start(self) -> None:
        # Round 0 is scored before any training, through Lightning's own validation loop (so
        # limit_val_batches, DDP sharding and the loggers apply); resumed runs skip it.
        if self.current_epoch == 0 and self.trainer.global_step == 0:
            self._validate_round_zero()

    @override
    def on_train_epoch_start(self) -> None:
        self.skipping_round = False
        self.round_plan = self._plan_round()  # published before the callbacks' round start
        dispatch("on_round_start", self.trainer.callbacks, self.trainer, self, self.current_epoch)
        self.clients.start_round()  # after the policies: it records this round's global ranks
        if self.stacked_round is not None:
            self.stacked_round.start_round()
        if self.zeroth_order is not None:
            self.zeroth_order.start_round(self.round_plan.seed)
        self.round_metrics = {}

    @override
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        plan = self.round_plan
        client = plan.client_of_step(batch_idx)  # None: an idle step padding this rank's shard
        loss, stepped = None, False
        if client is not None and self.skipping_round:
            self.clients.observe_batch(batch["input_ids"], batch.get("attention_mask"))
        elif client is not None and self.zeroth_order is not None:
            loss = self._zeroth_order_step(batch)  # no optimizer step: counted below
        elif client is not None and self.stacked_round is not None:
            self.stacked_round.add(batch, client)  # trains at the round's last batch
            self.clients.observe_batch(batch["input_ids"], batch.get("attention_mask"))
        elif client is not None:
            loss, stepped = self._local_step(batch, client)
        if not stepped:
            self._count_step_without_update()
        if batch_idx == plan.steps_this_rank - 1:
            if self.stacked_round is not None and not self.skipping_round:
                self.stacked_round.train()
            self._finish_round()
        return loss

    @override
    def on_train_epoch_end(self) -> None:
        if not self.round_metrics:  # stopped inside the round (a signal): drop it
            self._drop_unfinished_round()
            return
        metrics = dict(self.round_metrics)
        self.log("round/train_loss", metrics.pop("round/train_loss"), prog_bar=True)
        self.log_dict(metrics)

    @override
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if self._scoring_round_zero and batch_idx == 0:
            self._round_zero = look_up(self)  # after the callbacks' start hooks
        if self._round_zero is not None and self._round_zero.metrics is not None:
            return  # the cached round-0 metrics stand for this batch's forward
        self.task.update_metrics(self.val_metrics, self.model, batch)

    @override
    def on_validation_epoch_end(self) -> None:
        values = self._validation_values()
        self.last_metrics.update(values)
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.history.append(values[self.task.headline_metric])
        if self._scoring_round_zero:
            self.log_dict({f"{k}_round0": v for k, v in values.items()})
        headline = self.task.headline_metric
        self.log(headline, values.pop(headline), prog_bar=True)
        self.log_dict(values)

    @override
    def on_fit_end(self) -> None:
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank asks
        if self.trainer.is_global_zero:
            self.export_adapter(self.hparams.export_dir or Path(log_dir or ".") / "adapter")

    @override
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        saved = self._saved_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in saved}
        checkpoint["federation"] = {
            "global_adapter": {k: v.cpu() for k, v in self.global_adapter.items()},
            "ranks": self.ranks,
            "ledger": self.ledger.state_dict(),
            "clients": self.clients.state_dict(),
            "last_metrics": dict(self.last_metrics),
            "history": list(self.history),
        }

    @override
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        federation = checkpoint["federation"]
        self.rank_masks.load_state_dict(federation["ranks"])
        self.global_adapter = {
            k: v.to(self.device) for k, v in federation["global_adapter"].items()
        }
        self.load_adapter(self.global_adapter)
        self.ledger.load_state_dict(federation["ledger"])
        self.clients.load_state_dict(federation["clients"])
        self.last_metrics = dict(federation["last_metrics"])
        self.history = list(federation["history"])

    # -- export --------------------------------------------------------------------------------
    def export_adapter(self, folder: str | Path) -> Path:
        """Write the global adapter (and head) in peft format (active ranks in ``rank_pattern``)."""
        self.load_adapter(self.global_adapter)
        if self.aggregator.merges_into_base:
            self.exported_adapter_dir = export_merged_adapter(
                self.model,
                self.lora_layers,
                self.original_weights,
                self.ranks,
                folder,
                self.adapter_name,
            )
        else:
            self.exported_adapter_dir = export_peft_adapter(
                self.model, self.ranks, folder, self.adapter_name
            )
        log.info("Exported the global adapter to %s", self.exported_adapter_dir)
        return self.exported_adapter_dir

    # -- internals -----------------------------------------------------------------------------
    def _loss(self, batch: dict) -> torch.Tensor:
        return self._regularised(self.task.loss(self.model, batch))

    def _regularised(self, task_loss: torch.Tensor) -> torch.Tensor:
        """The task loss plus the SVD-form orthogonality penalty (when enabled)."""
        if self.lora_settings.svd_form and self.lora_settings.orth_reg_weight > 0:
            penalty = orthogonality_penalty(self.lora_layers, self.rank_masks.ranks)
            return task_loss + self.lora_settings.orth_reg_weight * penalty
        return task_loss

    def _local_step(self, batch: dict, client: int) -> tuple[torch.Tensor, bool]:
        """Forward, backward and optimizer step of ``client``'s batch; whether it stepped."""
        if int(batch["client_id"][0]) != client:
            raise RuntimeError(
                f"Batch of client {int(batch['client_id'][0])} where the round plan schedules "
                f"client {client}: the train loader must follow the datamodule's RoundSchedule."
            )
        self.clients.switch_to(client, self.round_plan.client_weights[client])
        optimizer = self.optimizers()
        with self._no_grad_sync():
            # round/train_loss (and the rank policies' reward) is the task loss; the
            # orthogonality penalty only shapes the gradient.
            task_loss = self.task.loss(self.model, batch)
            loss = self._regularised(task_loss)
            finite = bool(torch.isfinite(loss))
            if finite:
                self.manual_backward(loss)
        # A non-finite loss or gradient skips the step: it never reaches the adapter.
        stepped = finite and self._gradients_finite()
        if stepped:
            optimizer.step()  # clipped in on_before_optimizer_step
            self.clients.observe_loss(float(task_loss.detach()))
        else:
            self.clients.skipped_steps += 1
        optimizer.zero_grad(set_to_none=True)
        self.clients.observe_batch(batch["input_ids"], batch.get("attention_mask"))
        return loss.detach(), stepped

    def _count_step_without_update(self) -> None:
        """Count a batch that updates nothing (idle, skipped) as a step, as an optimizer step
        would: ``global_step`` (and ``max_steps``) then advance alike on every rank."""
        # Lightning counts manual-optimisation steps in this progress tracker (no public API).
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()

    def _saved_keys(self) -> set[str]:
        """State-dict keys a checkpoint holds: the adapter, the head and anything trained."""
        self.configure_model()
        keys = set(self.state_dict())
        if self.zeroth_order is not None and self.zeroth_order.parameters == "full":
            return keys  # full-parameter zeroth-order training moves every weight
        trained = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
        if self.aggregator.merges_into_base:  # FLoRA: the adapted base weights change
            trained |= {k for k in keys if k.endswith(".base_layer.weight")}
        return {k for k in keys if ".lora_" in k or ".modules_to_save." in k or k in trained}

    def _gradients_finite(self) -> bool:
        grads = [p.grad for p in self._trainable if p.grad is not None]
        return bool(torch.stack([g.isfinite().all() for g in grads]).all()) if grads else True

    def _no_grad_sync(self):
        block = getattr(self.trainer.strategy, "block_backward_sync", None)
        return block() if block is not None else contextlib.nullcontext()

    def _original_weights(self) -> dict[str, torch.Tensor]:
        """Adapted base weights before any merge (merging aggregators export against them)."""
        if not self.aggregator.merges_into_base:
            return {}
        return {n: base_weight(f).detach().cpu().clone() for n, f in self.lora_layers.items()}

    def _freeze_untrained(self) -> None:
        for name, factors in self.lora_layers.items():
            factors.lora_A.requires_grad_(self.aggregator.trained(f"{name}.lora_A"))
            factors.lora_B.requires_grad_(self.aggregator.trained(f"{name}.lora_B"))
            if factors.lora_E is not None:
                factors.lora_E.requires_grad_(self.aggregator.trained(f"{name}.lora_E"))
        for name, param in self.head_parameters.items():
            param.requires_grad_(self.aggregator.trained(name))

    def _zeroth_order_step(self, batch: dict) -> torch.Tensor:
        """Two forward passes per shared direction; the scalars become the client's upload."""
        loss = self.zeroth_order.step(int(batch["client_id"][0]), lambda: self._loss(batch))
        if torch.isfinite(loss):
            self.clients.observe_loss(float(loss))
        else:
            self.clients.skipped_steps += 1
        self.clients.observe_batch(batch["input_ids"], batch.get("attention_mask"))
        return loss

    def _finish_round(self) -> None:
        """Round end (on the last batch, before validation): uploads -> stages -> new global."""
        zo = self.zeroth_order
        uploads = self.clients.finish_round() if zo is None else zo.finish_round()
        template = self.global_adapter if zo is None else zo.template(self.device)
        round_idx = self.current_epoch
        if self.skipping_round:  # nothing crosses the link: no stage runs
            ctx = skipped_context(template, self.aggregator, self.round_plan)
        else:
            ctx = build_context(uploads, template, self.aggregator, self.round_plan)
            ctx = run_stages(self.trainer, self, ctx)
        finite = self._apply_aggregate(ctx.aggregate)
        ctx.metrics.update(
            {
                **self._record_traffic(ctx.uploads, template),
                "round/train_loss": self._round_train_loss(),
                "round/skipped_nonfinite": float(not finite),
                "round/skipped_steps": float(self.clients.skipped_steps),
                "round/skipped": float(self.skipping_round),
                **self._round_token_stats(),
            }
        )
        self.last_metrics.update(ctx.metrics)
        if not finite:
            rank_zero_warn(
                f"Round {round_idx}: non-finite aggregate; global adapter left unchanged."
            )
        # Callbacks observe the new global adapter and may add metrics of their own.
        dispatch("on_round_end", self.trainer.callbacks, self.trainer, self, ctx)
        self.round_metrics = dict(ctx.metrics)

    def _record_traffic(self, uploads: list, template: dict) -> dict[str, float]:
        """Uplink bits and, for first-order rounds, the download of the server's reply."""
        if self.zeroth_order is not None:  # its scalars have their own accounting
            return self.ledger.record(uploads)
        return self.ledger.record(uploads, aggregator=self.aggregator, template=template)

    def _apply_aggregate(self, aggregate: dict[str, torch.Tensor]) -> bool:
        """New global parameters from the server's aggregate (False: non-finite, unchanged)."""
        if self.zeroth_order is not None:
            finite = self.zeroth_order.apply_(aggregate)
            self.global_adapter = self.read_adapter()
            return finite
        if not all(bool(torch.isfinite(t).all()) for t in aggregate.values()):
            self.load_adapter(self.global_adapter)  # the clients' last adapter leaves the model
            return False
        updates = {n: t for n, t in aggregate.items() if not n.endswith(MERGE_SUFFIX)}
        self.global_adapter, _ = apply_update(
            self.global_adapter, updates, self.hparams.server_learning_rate
        )
        deltas = merged_deltas(aggregate)
        if deltas:
            self._merge_and_restart(deltas)
        self.load_adapter(self.global_adapter)
        return True

    def _merge_and_restart(self, deltas: dict[str, torch.Tensor]) -> None:
        """FLoRA: merge the stacked product into the base weights, re-initialise the adapter
        (from the round seed: identical on every DDP rank and after a resume)."""
        merge_into_base(self.lora_layers, deltas, self.hparams.server_learning_rate)
        generator = make_generator(self.round_plan.seed, _RESTART_STREAM)
        fresh = fresh_factors(self.lora_layers, generator)
        self.global_adapter.update({n: t.to(self.device) for n, t in fresh.items()})

    def _plan_round(self) -> RoundPlan:
        """This round's plan from the datamodule's schedule, cut where Lightning cuts the epoch."""
        datamodule = self._federated_datamodule()
        trainer = self.trainer
        limits = [trainer.num_training_batches]
        if trainer.max_steps >= 0:
            limits.append(trainer.max_steps - trainer.global_step)
        finite = [int(n) for n in limits if n != float("inf")]
        return build_round_plan(
            datamodule.schedule,
            self.current_epoch,
            self.hparams.seed,
            datamodule.client_sizes,
            max_steps=min(finite) if finite else None,
            global_rank=trainer.global_rank,
            world_size=trainer.world_size,
        )

    def _federated_datamodule(self):
        datamodule = getattr(self.trainer, "datamodule", None)
        if getattr(datamodule, "schedule", None) is None:
            raise TypeError(
                f"FederatedLoRAModule trains from a federated datamodule with a round schedule "
                f"(e.g. FederatedTextDataModule); got {type(datamodule).__name__}. Pass one as "
                "`datamodule`."
            )
        return datamodule

    def _round_train_loss(self) -> float:
        """Mean local loss over all ranks' steps (NaN in a skipped round: nothing trained)."""
        local = torch.tensor(
            [self.clients.loss_sum, float(self.clients.loss_count)], dtype=torch.float64
        )
        loss_sum, count = reduce_sum({"x": local})["x"].tolist()
        return loss_sum / count if count > 0 else math.nan

    def _round_token_stats(self) -> dict[str, float]:
        """Token entropy and unknown-token rate of the round's batches, over all ranks."""
        entropy_sum, batches, unknown, tokens = reduce_sum({"x": self.clients.token_sums()})[
            "x"
        ].tolist()
        return {
            "round/token_entropy": entropy_sum / max(batches, 1.0),
            "round/unk_rate": unknown / max(tokens, 1.0),
        }

    def _validation_values(self) -> dict[str, float]:
        """This validation's metrics: cached for round 0 when found, else computed (and then
        cached, for round 0, by global rank zero)."""
        entry, self._round_zero = self._round_zero, None
        if entry is not None and entry.metrics is not None:
            return dict(entry.metrics)
        values = self.task.compute_metrics(self.val_metrics)
        if entry is not None and self.trainer.is_global_zero:
            write_metrics(entry.key, values)
        return values

    def _validate_round_zero(self) -> None:
        trainer = self.trainer
        if not trainer.enable_validation:
            return
        # Lightning runs its validation loop the same way inside a training epoch.
        trainer.validating = True
        self._scoring_round_zero = True
        try:
            trainer.fit_loop.epoch_loop.val_loop.run()
        finally:
            self._scoring_round_zero = False
            trainer.training = True

    def _drop_unfinished_round(self) -> None:
        """Training stopped inside a round: its clients' work is dropped, the global stays."""
        self.rank_masks.set_ranks(self.clients.global_ranks, truncate="none")
        self.clients.start_round()
        if self.stacked_round is not None:
            self.stacked_round.start_round()
        load_adapter_tensors(self.lora_layers, self.global_adapter)
        rank_zero_warn(f"Training stopped inside round {self.current_epoch}; the round is dropped.")


def _stacked_round(stacked_clients: bool, module) -> StackedRound | None:
    if not isinstance(stacked_clients, bool):
        raise TypeError(f"`stacked_clients` ({stacked_clients!r}) must be true or false.")
    if not stacked_clients:
        return None
    check_stacked_module(module)
    return StackedRound(module)


def _check_zeroth_order(zeroth_order: ZerothOrder | None, module) -> ZerothOrder | None:
    if zeroth_order is None:
        return None
    if type(module.aggregator) is not FedIT:
        raise ValueError(
            f"`aggregator` ({type(module.aggregator).__name__}) cannot combine zeroth-order "
            "scalars; use FedIT (the mean over clients) with `zeroth_order`."
        )
    if module.optimizer_factory is not None:
        raise ValueError(
            "`optimizer` and `zeroth_order` are both set; zeroth-order training uses no "
            "optimizer: remove `optimizer`."
        )
    return zeroth_order


class ModelSource(NamedTuple):
    """Where the base model comes from (the module's first three arguments)."""

    model: str
    gguf_file: str | None
    cache_dir: str | None


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"`{name}` ({value}) must be a finite number > 0.")


def _check_nonnegative(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"`{name}` ({value}) must be a finite number >= 0.")


def _check_merging(aggregator: Aggregator, settings: LoRASettings) -> None:
    if aggregator.merges_into_base and (settings.svd_form or settings.rslora):
        option = "svd_form" if settings.svd_form else "rslora"
        raise ValueError(
            f"`aggregator` ({type(aggregator).__name__}) merges plain LoRA products B A scaled "
            f"by alpha / r into the base weights; `lora.{option}` is true. Set it to false."
        )
