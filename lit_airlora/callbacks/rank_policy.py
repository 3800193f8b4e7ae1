"""Set LoRA ranks between rounds with a pluggable rank policy, and log what it chose."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lit_airlora.callbacks.figure_logging import log_figure
from lit_airlora.callbacks.rank_heatmap import rank_heatmap_figure
from lit_airlora.callbacks.remote_link import current_plan
from lit_airlora.channel.costs import shannon_rate_bps
from lit_airlora.channel.large_scale import LargeScale
from lit_airlora.federated.remote import RankSource
from lit_airlora.federated.stages import StageCallback
from lit_airlora.federated.upload import RoundContext
from lit_airlora.lora.layers import adapter_tensors
from lit_airlora.lora.masks import RankMasks
from lit_airlora.policy import adapter_state as state
from lit_airlora.policy.base import Feedback, RankPolicy, check_action
from lit_airlora.policy.channel_state import ChannelState
from lit_airlora.policy.observation import Observation, check_required

TRUNCATIONS = ("importance", "svd", "prefix", "none")


class RankPolicyCallback(StageCallback, RankSource):
    """Asks a :class:`RankPolicy` for the ranks of every LoRA module before each round.

    At the start of a round it builds an :class:`Observation` (ranks, shapes, importance of the
    live factors, the spectrum of the previous round's update, the channel state, the module's
    training scalars), calls ``policy.act`` and applies the ranks: through
    ``pl_module.set_ranks`` on our federated module (``on_round_start``, dispatched by the
    module), or through a :class:`RankMasks` it keeps over any other LightningModule holding a
    peft LoRA model (``on_train_epoch_start``; one epoch is one round; remote-link stage
    callbacks read :meth:`active_ranks` and upload only the active ranks). At the end of the round
    it measures the update's spectrum and gives the policy its :class:`Feedback`. The importance
    and the update spectrum (one SVD per module and round) are computed only for a policy that
    lists them in ``required_observations``; for any other policy those fields are None. Ranks per
    module and round are kept, logged as a TensorBoard heatmap (rank zero) and as the scalars
    ``policy/mean_rank`` and ``policy/payload_bits``; policy and history are checkpointed.

    A policy may declare a round infeasible (``policy.skip_round``, AirLLM: the payload exceeds
    the link's capacity budget): its ranks are then not applied and the module is told to skip
    the round (``skip_round_training``: no local step, nothing uploaded), and the policy still
    gets its feedback (a penalty). After each update the policy's ``update_metrics`` join the
    round's ``policy/*`` scalars.

    A policy with a link model (AirLLM's capacity accounting) also prices what the round
    actually sent: ``comm/airtime_s`` and ``comm/energy_j`` from each client's uploaded bits at
    the rate the policy priced for it (``RankPolicy.link_costs``), in the units of the channel
    callbacks. A channel callback that logs them already (a simulated link) takes precedence.

    The channel state comes from a channel callback that reports SNRs
    (:class:`~lit_airlora.policy.channel_state.SNRReporter`), else from ``large_scale`` (see
    :class:`~lit_airlora.policy.channel_state.ChannelState`), for the clients of the round's
    plan. Every DDP rank builds the same observation, so every rank applies the same ranks.

    Args:
        policy: The rank policy (``class_path`` in YAML).
        truncate: How ``set_ranks`` lowers a rank: ``importance``, ``svd``, ``prefix``, ``none``.
        every_n_rounds: Ask the policy every ``n`` rounds; ranks stay fixed in between.
        large_scale: Large-scale SNR model used when no channel callback reports SNRs.
        bandwidth_hz: Bandwidth for the ``capacity_bps`` observation (else the channel's).
        seed: Seed of the ``large_scale`` draws.
        adapter_name: peft adapter to mask in LightningModules without ``set_ranks``.
        heatmap_every_n_rounds: Log the rank heatmap every ``n`` rounds (0: never).
    """

    def __init__(
        self,
        policy: RankPolicy,
        truncate: str = "importance",
        every_n_rounds: int = 1,
        large_scale: LargeScale | None = None,
        bandwidth_hz: float | None = None,
        seed: int = 0,
        adapter_name: str = "default",
        heatmap_every_n_rounds: int = 1,
    ) -> None:
        _check_policy(policy)
        if truncate not in TRUNCATIONS:
            raise ValueError(f"`truncate` ({truncate!r}) must be one of {TRUNCATIONS}.")
        _check_count("every_n_rounds", every_n_rounds, minimum=1)
        _check_count("heatmap_every_n_rounds", heatmap_every_n_rounds, minimum=0)
        if bandwidth_hz is not None and not bandwidth_hz > 0:
            raise ValueError(f"`bandwidth_hz` ({bandwidth_hz!r}) must be > 0 (or None).")
        self.policy, self.truncate = policy, truncate
        self.every_n_rounds, self.heatmap_every_n_rounds = every_n_rounds, heatmap_every_n_rounds
        self.channel = ChannelState(large_scale, bandwidth_hz, seed)
        self.adapter_name = adapter_name
        self.rounds: list[int] = []
        self.rank_history: dict[str, list[int]] = {}
        self.spectrum: dict[str, Tensor] | None = None
        self.value_power: float | None = None
        self._masks: RankMasks | None = None  # only on modules without ``set_ranks``
        self._pending_mask_ranks: dict[str, int] | None = None
        self._pending: tuple[Observation, dict[str, int]] | None = None
        self._link: tuple[Tensor, float | None] | None = None  # (SNR dB, bandwidth) priced
        self._start: dict[str, Tensor] = {}

    # -- setup ---------------------------------------------------------------------------------
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        if not callable(getattr(pl_module, "set_ranks", None)) and self._masks is None:
            self._masks = RankMasks(pl_module, self.adapter_name)
            if self._pending_mask_ranks is not None:
                self._masks.load_state_dict(self._pending_mask_ranks)
        self.policy.check_max_rank(self._max_rank(pl_module))
        can_skip = callable(getattr(pl_module, "skip_round_training", None))
        if self.policy.skips_rounds and not can_skip:
            raise ValueError(
                f"`policy` ({type(self.policy).__name__}) skips infeasible rounds, which needs a "
                f"module with `skip_round_training()` (FederatedLoRAModule, also for remote "
                f"fine-tuning with one client); {type(pl_module).__name__} has none. Set the "
                "policy's `skip_infeasible: false` to train those rounds (still penalised)."
            )
        available = self._available_observations(trainer, pl_module)
        check_required(self.policy.required_observations, available, type(self.policy).__name__)

    def _available_observations(self, trainer: Trainer, pl_module: LightningModule) -> set[str]:
        available = {
            "importance",
            "update_spectrum",
            "update_value_power",
            "train_loss",
            "val_loss",
        }
        if callable(getattr(pl_module, "observe", None)):
            available.add("token_entropy")
        if self.channel.has_snr(trainer):
            available.add("snr_db")
            if self.channel.bandwidth_hz(trainer) is not None:
                available |= {"capacity_bps", "bandwidth_hz"}
        return available

    @override
    def active_ranks(self) -> dict[str, int] | None:
        """Ranks of the masks it keeps over a module without ``set_ranks`` (else None)."""
        return None if self._masks is None else dict(self._masks.ranks)

    # -- round start ---------------------------------------------------------------------------
    @override
    def on_round_start(self, trainer: Trainer, pl_module: LightningModule, round_idx: int) -> None:
        """Stage hook dispatched by ``FederatedLoRAModule`` before local training."""
        self._start_round(trainer, pl_module, round_idx)

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._masks is not None:  # our module dispatches ``on_round_start`` instead
            self._start_round(trainer, pl_module, trainer.current_epoch)

    def _start_round(self, trainer: Trainer, pl_module: LightningModule, round_idx: int) -> None:
        self._pending = None
        self._link = self._round_link(trainer, pl_module, round_idx)
        if round_idx % self.every_n_rounds == 0:
            obs = self.observe(trainer, pl_module, round_idx)
            ranks = self.policy.act(obs)
            check_action(ranks, obs, type(self.policy).__name__)
            self._pending = (obs, ranks)
            if self.policy.skip_round(obs, ranks):
                # Nothing is trained or sent: the adapter and its ranks stay as they were.
                pl_module.skip_round_training()
            else:
                self._set_ranks(pl_module, ranks)
        ranks = self._ranks(pl_module)
        self._record(round_idx, ranks)
        self._log_round(trainer, pl_module, round_idx, ranks)
        if self._masks is not None:
            self._start = adapter_tensors(self._masks.layers)

    def observe(self, trainer: Trainer, pl_module: LightningModule, round_idx: int) -> Observation:
        """The observation for ``round_idx`` (public so learned policies can be debugged)."""
        layers = self._layers(pl_module)
        scalars = self._scalars(trainer, pl_module)
        snr_db = self.channel.snr_db(
            trainer, round_idx, current_plan(trainer, pl_module, round_idx)
        )
        bandwidth_hz = self.channel.bandwidth_hz(trainer)
        capacity = None
        if snr_db is not None and bandwidth_hz is not None:
            capacity = shannon_rate_bps(bandwidth_hz, snr_db)
        return Observation(
            round_idx=round_idx,
            ranks=self._ranks(pl_module),
            max_rank=self._max_rank(pl_module),
            shapes=state.module_shapes(layers),
            snr_db=snr_db,
            capacity_bps=capacity,
            bandwidth_hz=bandwidth_hz if snr_db is not None else None,
            train_loss=state.named_scalar(scalars, "train_loss"),
            val_loss=state.named_scalar(scalars, "val_loss"),
            token_entropy=state.named_scalar(scalars, "token_entropy"),
            importance=state.factor_importance(layers) if self._needs("importance") else None,
            update_spectrum=self.spectrum,
            update_value_power=self.value_power,
            sent_factors=_sent_factors(pl_module),
            **_round_keys(pl_module, round_idx),
            scalars=scalars,
        )

    # -- round end -----------------------------------------------------------------------------
    @override
    def on_round_end(self, trainer: Trainer, pl_module: LightningModule, ctx: RoundContext) -> None:
        """Stage hook dispatched by ``FederatedLoRAModule`` after the global update."""
        if self._masks is not None:  # a remote-link round: ``on_train_epoch_end`` handles it
            return
        for key, value in self._link_costs(ctx).items():
            ctx.metrics.setdefault(key, value)
        after = pl_module.global_adapter
        sums = ctx.reduce({"power": state.upload_power_sums(ctx.uploads)})["power"]
        self._end_round(trainer, pl_module, ctx.global_adapter, after, sums, dict(ctx.metrics))
        ctx.metrics.update({f"policy/{k}": v for k, v in self.policy.update_metrics().items()})

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._masks is not None and self._start:
            after = adapter_tensors(self._masks.layers)
            sums = state.factor_update_power(self._start, after)
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            self._end_round(trainer, pl_module, self._start, after, sums, metrics)
            for key, value in self.policy.update_metrics().items():
                pl_module.log(f"policy/{key}", float(value), on_step=False, on_epoch=True)

    def _needs(self, observation: str) -> bool:
        """Whether the policy reads ``observation`` (the costly ones are computed only then)."""
        return observation in self.policy.required_observations

    def _end_round(self, trainer, pl_module, before, after, power_sums, metrics) -> None:
        if all(bool(torch.isfinite(t).all()) for t in after.values()):
            if self._needs("update_spectrum"):  # one SVD per module: only for policies that read it
                layers, ranks = self._layers(pl_module), self._ranks(pl_module)
                self.spectrum = state.adapter_update_spectra(layers, before, after, ranks)
            count = float(power_sums[1])
            self.value_power = float(power_sums[0]) / count if count > 0 else None
        else:
            rank_zero_warn("Non-finite LoRA factors: keeping the previous update spectrum.")
        if self._pending is None:
            return
        obs, chosen = self._pending
        scalars = {**self._scalars(trainer, pl_module), **metrics}
        feedback = Feedback(
            round_idx=obs.round_idx,
            train_loss=state.named_scalar(scalars, "train_loss"),
            val_loss=state.named_scalar(scalars, "val_loss"),
            payload_bits=self.policy.payload_bits(chosen, obs.shapes),
            metrics=metrics,
        )
        self.policy.update(obs, chosen, feedback)
        self._pending = None

    # -- link costs ----------------------------------------------------------------------------
    def _round_link(self, trainer, pl_module, round_idx: int) -> tuple[Tensor, float | None] | None:
        """The SNRs and bandwidth this round's observation prices (None: no link model)."""
        if not self.policy.has_link_model:
            return None
        snr_db = self.channel.snr_db(
            trainer, round_idx, current_plan(trainer, pl_module, round_idx)
        )
        return None if snr_db is None else (snr_db, self.channel.bandwidth_hz(trainer))

    def _link_costs(self, ctx: RoundContext) -> dict[str, float]:
        """Airtime and energy of the round's uploads at the rates the policy priced."""
        if self._link is None or "comm/airtime_s" in ctx.metrics:  # same on every DDP rank
            return {}
        clients = ctx.round_clients or sorted(u.client_id for u in ctx.uploads)
        position = {c: i for i, c in enumerate(clients)}
        bits = torch.zeros(len(clients), dtype=torch.float64)
        for upload in ctx.uploads:
            bits[position[upload.client_id]] += upload.payload_bits()
        bits = ctx.reduce({"bits": bits})["bits"]  # (K,)
        return self.policy.link_costs(bits, *self._link)

    # -- logging -------------------------------------------------------------------------------
    def _record(self, round_idx: int, ranks: dict[str, int]) -> None:
        if self.rounds and self.rounds[-1] >= round_idx:  # a round re-run after a resume
            keep = sum(r < round_idx for r in self.rounds)
            self.rounds = self.rounds[:keep]
            self.rank_history = {n: h[:keep] for n, h in self.rank_history.items()}
        self.rounds.append(round_idx)
        for name, rank in ranks.items():
            self.rank_history.setdefault(name, []).append(rank)

    def _log_round(self, trainer, pl_module, round_idx: int, ranks: dict[str, int]) -> None:
        shapes = state.module_shapes(self._layers(pl_module))
        metrics = {
            "policy/mean_rank": sum(ranks.values()) / len(ranks),
            "policy/payload_bits": self.policy.payload_bits(ranks, shapes),
            **{f"policy/{k}": v for k, v in self.policy.metrics().items()},
        }
        for key, value in metrics.items():
            pl_module.log(key, float(value), on_step=False, on_epoch=True)
        every = self.heatmap_every_n_rounds
        if every and round_idx % every == 0 and trainer.is_global_zero and trainer.loggers:
            figure = rank_heatmap_figure(self.rounds, self.rank_history, self._max_rank(pl_module))
            log_figure(trainer, "policy/rank_heatmap", figure, round_idx)

    # -- module access -------------------------------------------------------------------------
    def _layers(self, pl_module):
        return self._masks.layers if self._masks is not None else pl_module.lora_layers

    def _ranks(self, pl_module) -> dict[str, int]:
        return dict(self._masks.ranks) if self._masks is not None else dict(pl_module.ranks)

    def _max_rank(self, pl_module) -> int:
        return self._masks.max_rank if self._masks is not None else int(pl_module.max_rank)

    def _set_ranks(self, pl_module, ranks: dict[str, int]) -> None:
        if self._masks is not None:
            self._masks.set_ranks(ranks, truncate=self.truncate)
        else:
            pl_module.set_ranks(ranks, truncate=self.truncate)

    def _scalars(self, trainer, pl_module) -> dict[str, float]:
        if callable(getattr(pl_module, "observe", None)):
            return {k: float(v) for k, v in pl_module.observe().items()}
        metrics = trainer.callback_metrics if trainer is not None else {}
        return {k: float(v) for k, v in metrics.items() if torch.as_tensor(v).numel() == 1}

    # -- checkpoint ----------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "rounds": list(self.rounds),
            "rank_history": {n: list(h) for n, h in self.rank_history.items()},
            "spectrum": None if self.spectrum is None else dict(self.spectrum),
            "value_power": self.value_power,
            "mask_ranks": None if self._masks is None else dict(self._masks.ranks),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.policy.load_state_dict(state_dict["policy"])
        self.rounds = list(state_dict["rounds"])
        self.rank_history = {n: list(h) for n, h in state_dict["rank_history"].items()}
        spectrum = state_dict["spectrum"]
        self.spectrum = None if spectrum is None else dict(spectrum)
        self.value_power = state_dict["value_power"]
        self._pending_mask_ranks = state_dict["mask_ranks"]
        if self._masks is not None and self._pending_mask_ranks is not None:
            self._masks.load_state_dict(self._pending_mask_ranks)


def _check_policy(policy: Any) -> None:
    if not isinstance(policy, RankPolicy):
        raise TypeError(
            f"`policy` ({type(policy).__name__}) must be a lit_airlora.policy.base.RankPolicy, "
            "e.g. lit_airlora.policy.fixed.FixedRank."
        )


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` ({value!r}) must be an integer >= {minimum}.")


def _sent_factors(pl_module: LightningModule) -> tuple[str, ...]:
    """The factors the module's aggregator sends (both without an aggregator: plain LoRA)."""
    aggregator = getattr(pl_module, "aggregator", None)
    if aggregator is None:
        return ("lora_A", "lora_B")
    return tuple(f for f in ("lora_A", "lora_B") if aggregator.trainable(f"module.{f}"))


def _round_keys(pl_module: LightningModule, round_idx: int) -> dict:
    """The round plan's seed and client weights, when the module publishes this round's plan."""
    plan = getattr(pl_module, "round_plan", None)
    if plan is None or plan.round_idx != round_idx:
        return {}
    return {"round_seed": int(plan.seed), "client_weights": dict(plan.client_weights)}
