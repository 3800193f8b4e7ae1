"""The split-learning LightningModules: SplitLLM (user / edge / cloud) and the SFL baseline."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lit_airlora.federated.aggregators import FedIT
from lit_airlora.federated.collectives import reduce_sum
from lit_airlora.federated.plan import RoundPlan, build_round_plan
from lit_airlora.federated.round import apply_update, build_context, run_stages
from lit_airlora.federated.stages import dispatch
from lit_airlora.federated.upload import Upload
from lit_airlora.hparams import from_hparam, store_hparams
from lit_airlora.lora.config import LoRASettings
from lit_airlora.lora.layers import adapter_tensors, load_adapter_tensors
from lit_airlora.models import load_config
from lit_airlora.module import FederatedLoRAModule
from lit_airlora.seeding import make_generator
from lit_airlora.split.cutting import (
    check_architecture,
    check_cut_points,
    tier_modules,
    tier_specs,
)
from lit_airlora.split.links import IdealLink, TensorLink
from lit_airlora.split.step import Hop, split_step
from lit_airlora.split.tiers import DecoderParts
from lit_airlora.split.traffic import SplitTraffic


@dataclass
class _Stream:
    """One stream's round: its per-stream adapters, optimizer states and weight."""

    weight: float
    adapters: dict[str, Tensor]
    optimizer_states: dict[str, dict] = field(default_factory=dict)


class SplitLLMModule(FederatedLoRAModule):
    """SplitLLM: hierarchical split learning with LoRA (Zhang et al., arXiv 2501.13318).

    The decoder is cut at ``cut_points = [c1, c2]``: the user holds the embeddings, blocks
    ``[0, c1)`` and LoRA_u, the edge blocks ``[c1, c2)`` and LoRA_e, the cloud the remaining
    blocks, the head and LoRA_s; base weights are frozen. Each round every edge picks one of its
    users (``SplitTextDataModule``), and the ``E`` user-edge streams train side by side: per
    local step each stream runs user forward -> ``uplink`` -> edge forward -> ``backhaul`` ->
    cloud forward and loss, then gradients back (``backhaul`` -> edge -> ``downlink`` -> user);
    the user and edge step their own adapters, and the cloud steps its one LoRA_s once per local
    step on the mean gradient of all ``E`` streams (summed over DDP ranks). At round end the
    user and edge adapters cross the upload stages like federated uploads (callbacks may encode
    or transmit them) and are averaged by data size (FedAvg); the global model exports as one
    peft adapter for the unsplit model. Streams are simulated in turn on one base model (only
    adapter tensors swap) or shared out over DDP ranks. Logs the traffic of every hop and the
    round latency (``comm/*``, :class:`SplitTraffic`).

    Args:
        model: Hub id, local folder, or ``"pypi:<package>"``.
        cut_points: ``[c1, c2]`` block counts, ``1 <= c1 < c2 <= L - 1``.
        gguf_file: GGUF file inside ``model``.
        cache_dir: Where to cache a dequantised GGUF model.
        lora: LoRA settings (each tier must hold an adapted module).
        uplink: User -> edge activation link (default ``IdealLink``).
        downlink: Edge -> user gradient link (default ``IdealLink``).
        backhaul: Edge <-> cloud link, both directions (default ``IdealLink``).
        learning_rate: AdamW learning rate of every tier.
        weight_decay: AdamW weight decay.
        gradient_clip_val: Max gradient norm per tier and step (``None``: no clipping).
        export_dir: Where to export the final adapter (default: ``<log_dir>/adapter``).
        seed: Seed of the round's shared randomness (link noise, block errors); ``None``: the
            run's ``seed_everything`` seed.
    """

    #: Tiers whose adapter is one copy stepped by all streams; the others are per stream.
    shared_tiers: tuple[str, ...] = ("cloud",)
    built_with_the_model = FederatedLoRAModule.built_with_the_model | {"parts", "tier_modules"}

    def __init__(
        self,
        model: str,
        cut_points: list[int],
        gguf_file: str | None = None,
        cache_dir: str | None = None,
        lora: LoRASettings | None = None,
        uplink: TensorLink | None = None,
        downlink: TensorLink | None = None,
        backhaul: TensorLink | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        gradient_clip_val: float | None = 1.0,
        export_dir: str | None = None,
        seed: int | None = None,
    ) -> None:
        uplink, downlink, backhaul = (
            from_hparam(link, TensorLink, name)
            for link, name in ((uplink, "uplink"), (downlink, "downlink"), (backhaul, "backhaul"))
        )
        _check_links(uplink=uplink, downlink=downlink, backhaul=backhaul)
        config = load_config(model, gguf_file, cache_dir)
        check_architecture(config.model_type)
        super().__init__(
            model=model,
            gguf_file=gguf_file,
            cache_dir=cache_dir,
            lora=lora,
            aggregator=FedIT(),
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            gradient_clip_val=gradient_clip_val,
            export_dir=export_dir,
            seed=seed,
        )
        store_hparams(self, uplink=uplink, downlink=downlink, backhaul=backhaul)
        self.specs = tier_specs(
            self._cuts(cut_points, config.num_hidden_layers), config.num_hidden_layers
        )
        self.hops = _hops([s.name for s in self.specs], uplink, downlink, backhaul)
        self.stream_tiers = [s.name for s in self.specs if s.name not in self.shared_tiers]
        kinds = ("activation", "gradient")
        self.traffic = SplitTraffic([f"{h.name}/{k}" for h in self.hops for k in kinds])
        self._streams: dict[int, _Stream] = {}

    @override
    def _build_model(self) -> None:
        super()._build_model()
        self.parts = DecoderParts.of(self.model)
        self.tier_modules = tier_modules(list(self.lora_layers), self.specs)

    def _cuts(self, cut_points: list[int], num_layers: int) -> tuple[int, ...]:
        return check_cut_points(cut_points, num_layers, 2)

    # -- Lightning hooks -----------------------------------------------------------------------
    @override
    def setup(self, stage: str) -> None:
        super().setup(stage)
        for hop in self.hops:
            hop.forward.setup(self.device)
            hop.backward.setup(self.device)

    @override
    def configure_optimizers(self):
        return [
            torch.optim.AdamW(
                self._tier_params(s.name),
                lr=self.hparams.learning_rate,
                weight_decay=self.hparams.weight_decay,
            )
            for s in self.specs
        ]

    @override
    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._streams = {}
        self.traffic.start_round()

    @override
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        optimizers = dict(zip([s.name for s in self.specs], self.optimizers(), strict=True))
        streams = _split_streams(batch)
        with self._no_grad_sync():
            losses = [
                self._stream_step(c, w, rows, optimizers, batch_idx) for c, w, rows in streams
            ]
            self._shared_step(optimizers, len(streams))
        self.clients.observe_batch(batch["input_ids"])
        if self.trainer.is_last_batch:
            self._finish_round()
        return torch.tensor(sum(losses) / len(losses))

    @override
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["split"] = {"traffic": self.traffic.state_dict()}

    @override
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.traffic.load_state_dict(checkpoint["split"]["traffic"])

    # -- one local step ------------------------------------------------------------------------
    def _stream_step(self, client_id: int, weight: float, rows: dict, optimizers, step: int):
        stream = self._streams.setdefault(client_id, self._new_stream(weight))
        self._enter(stream, optimizers)
        stats = split_step(
            self.parts, self.specs, self.hops, rows, self._generators(client_id, step)
        )
        params = [p for t in self.stream_tiers for p in self._tier_params(t)]
        if math.isfinite(stats.loss) and _finite(params):
            for tier in self.stream_tiers:
                self._clipped_step(optimizers[tier])
            self.clients.observe_loss(stats.loss)
        else:  # a non-finite loss or gradient never reaches the adapters
            self.clients.skipped_steps += 1
        self._leave(stream, optimizers)
        self.traffic.observe(client_id, stats)
        return stats.loss

    def _shared_step(self, optimizers, num_streams: int) -> None:
        """Step each shared tier once on the mean gradient of all streams of all ranks."""
        for tier in self.shared_tiers:
            params = self._tier_params(tier)
            grads = {str(i): _grad(p) for i, p in enumerate(params)}
            grads["streams"] = torch.tensor([float(num_streams)], dtype=torch.float32)
            summed = reduce_sum(grads)
            count = summed.pop("streams")
            if all(bool(g.isfinite().all()) for g in summed.values()):
                for i, p in enumerate(params):
                    p.grad = summed[str(i)].to(p.device) / count.to(p.device)
                self._clipped_step(optimizers[tier])
            else:
                self.clients.skipped_steps += 1
            optimizers[tier].zero_grad(set_to_none=True)

    def _clipped_step(self, optimizer) -> None:
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.gradient_clip_val)
        optimizer.step()

    def _new_stream(self, weight: float) -> _Stream:
        names = self._tensor_names(self.stream_tiers)
        return _Stream(weight, {n: self.global_adapter[n].clone() for n in names})

    def _enter(self, stream: _Stream, optimizers) -> None:
        load_adapter_tensors(self.lora_layers, stream.adapters)
        for tier in self.stream_tiers:
            raw = optimizers[tier].optimizer
            raw.state = defaultdict(dict, stream.optimizer_states.get(tier, {}))
            raw.zero_grad(set_to_none=True)

    def _leave(self, stream: _Stream, optimizers) -> None:
        layers = {m: self.lora_layers[m] for t in self.stream_tiers for m in self.tier_modules[t]}
        stream.adapters = adapter_tensors(layers)
        for tier in self.stream_tiers:
            raw = optimizers[tier].optimizer
            stream.optimizer_states[tier] = dict(raw.state)
            raw.state = defaultdict(dict)
            raw.zero_grad(set_to_none=True)

    def _generators(self, client_id: int, step: int) -> list[tuple]:
        """Per hop, (forward, backward) generators keyed by round, stream, step and hop."""
        seed = self.round_plan.seed
        return [
            tuple(make_generator(seed, client_id, step, h, d, device=self.device) for d in (0, 1))
            for h in range(len(self.hops))
        ]

    @override
    def _plan_round(self) -> RoundPlan:
        """The round's plan for step-major batches: every stream of this rank trains at every
        step, so the round runs ``local_steps`` batches (cut where Lightning cuts the epoch) and
        all scheduled clients train; ``client_of_step`` names a step's first stream only."""
        trainer = self.trainer
        limits = [trainer.num_training_batches]
        if trainer.max_steps >= 0:
            limits.append(trainer.max_steps - trainer.global_step)
        full = build_round_plan(
            self._federated_datamodule().schedule,
            self.current_epoch,
            self.hparams.seed,
            trainer.datamodule.client_sizes,
            global_rank=trainer.global_rank,
            world_size=trainer.world_size,
        )
        steps = min([full.local_steps] + [int(n) for n in limits if n != float("inf")])
        return replace(full, steps_this_rank=max(steps, 0))

    # -- round end -----------------------------------------------------------------------------
    @override
    def _finish_round(self) -> None:
        """Average the per-stream adapters through the upload stages; refresh the global."""
        names = self._tensor_names(self.stream_tiers)
        previous = {n: self.global_adapter[n] for n in names}
        uploads = [
            Upload(c, {n: s.adapters[n] - previous[n] for n in names}, self.ranks, s.weight)
            for c, s in sorted(self._streams.items())
        ]
        round_idx = self.current_epoch
        ctx = build_context(uploads, previous, self.aggregator, self.round_plan)
        ctx = run_stages(self.trainer, self, ctx)
        new, finite = apply_update(previous, ctx.aggregate, 1.0)
        self.global_adapter.update(new)
        shared = self._tensor_names(self.shared_tiers)
        self.global_adapter.update({n: self._live(n) for n in shared})
        load_adapter_tensors(self.lora_layers, self.global_adapter)
        ctx.metrics.update(self._round_metrics(ctx, names, finite))
        if not finite:
            rank_zero_warn(f"Round {round_idx}: non-finite aggregate; adapters left unchanged.")
        dispatch("on_round_end", self.trainer.callbacks, self.trainer, self, ctx)
        self.round_metrics = dict(ctx.metrics)

    def _round_metrics(self, ctx, names: list[str], finite: bool) -> dict[str, float]:
        sent_back = sum(self.global_adapter[n].numel() for n in names) * 32.0
        return {
            **self.ledger.record(ctx.uploads),
            **self.traffic.finish_round(),
            "comm/adapter_download_bits": sent_back * len(ctx.round_clients),
            "round/train_loss": self._round_train_loss(),
            "round/skipped_nonfinite": float(not finite),
            "round/skipped_steps": float(self.clients.skipped_steps),
            **self._round_token_stats(),
        }

    # -- tiers ---------------------------------------------------------------------------------
    def _tier_params(self, tier: str) -> list[torch.nn.Parameter]:
        layers = [self.lora_layers[m] for m in self.tier_modules[tier]]
        return [p for f in layers for p in (f.lora_A, f.lora_B)]

    def _tensor_names(self, tiers) -> list[str]:
        return [
            f"{m}.{k}" for t in tiers for m in self.tier_modules[t] for k in ("lora_A", "lora_B")
        ]

    def _live(self, name: str) -> Tensor:
        module, kind = name.rsplit(".", 1)
        factors = self.lora_layers[module]
        return (factors.lora_A if kind == "lora_A" else factors.lora_B).detach().float().clone()


class SFLModule(SplitLLMModule):
    """SFL baseline: SplitFed-v1 / SplitLoRA-style two-tier split learning with LoRA.

    One cut: each user holds the embeddings, blocks ``[0, cut_point)`` and its LoRA; the server
    runs one server-side copy of the rest (blocks, head, LoRA) per user, all of the round's users
    in parallel (Thapa et al., AAAI 2022, SplitFed-v1; Lin et al., SplitLoRA, 2024). At round end
    the user-side and the server-side adapters are both averaged by data size (FedAvg). Use it
    with ``SplitTextDataModule(num_edges=None, clients_per_round=N)``.

    Args:
        model: Hub id, local folder, or ``"pypi:<package>"``.
        cut_point: Blocks held by the user, ``1 <= cut_point <= L - 1``.
        gguf_file: GGUF file inside ``model``.
        cache_dir: Where to cache a dequantised GGUF model.
        lora: LoRA settings.
        uplink: User -> server activation link (default ``IdealLink``).
        downlink: Server -> user gradient link (default ``IdealLink``).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        gradient_clip_val: Max gradient norm per tier and step (``None``: no clipping).
        export_dir: Where to export the final adapter.
        seed: Seed of the round's shared randomness (``None``: ``seed_everything``'s).
    """

    shared_tiers = ()

    def __init__(
        self,
        model: str,
        cut_point: int,
        gguf_file: str | None = None,
        cache_dir: str | None = None,
        lora: LoRASettings | None = None,
        uplink: TensorLink | None = None,
        downlink: TensorLink | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        gradient_clip_val: float | None = 1.0,
        export_dir: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            model=model,
            cut_points=[cut_point],
            gguf_file=gguf_file,
            cache_dir=cache_dir,
            lora=lora,
            uplink=uplink,
            downlink=downlink,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            gradient_clip_val=gradient_clip_val,
            export_dir=export_dir,
            seed=seed,
        )

    @override
    def _cuts(self, cut_points: list[int], num_layers: int) -> tuple[int, ...]:
        return check_cut_points(cut_points, num_layers, 1, name="cut_point")


def _hops(names: list[str], uplink, downlink, backhaul) -> list[Hop]:
    hops = [Hop(f"{names[0]}_{names[1]}", uplink or IdealLink(), downlink or IdealLink())]
    if len(names) == 3:
        link = backhaul or IdealLink()
        hops.append(Hop(f"{names[1]}_{names[2]}", link, link))
    return hops


def _split_streams(batch: dict) -> list[tuple[int, float, dict]]:
    """The batch's rows grouped by ``client_id`` (in order of first appearance)."""
    ids = batch["client_id"].tolist()
    out = []
    for client in dict.fromkeys(ids):
        rows = torch.tensor([i for i, c in enumerate(ids) if c == client])
        index = rows.to(batch["input_ids"].device)
        weight = float(batch["client_weight"][rows[0]])
        keys = ("input_ids", "attention_mask", "labels")
        out.append((int(client), weight, {k: batch[k].index_select(0, index) for k in keys}))
    return out


def _grad(p: torch.nn.Parameter) -> Tensor:
    return (
        p.grad.detach().float() if p.grad is not None else torch.zeros_like(p, dtype=torch.float32)
    )


def _finite(params: list[torch.nn.Parameter]) -> bool:
    return all(bool(p.grad.isfinite().all()) for p in params if p.grad is not None)


def _check_links(**links: object) -> None:
    for name, link in links.items():
        if link is not None and not isinstance(link, TensorLink):
            raise TypeError(
                f"`{name}` ({type(link).__name__}) must be a TensorLink (IdealLink, "
                "QuantizedLink, AnalogLink, DigitalTensorLink) chosen in YAML by `class_path`."
            )
