"""TSFA: two-stage control of SOFT's rank (offline) and sparsity / FDMA bandwidth (online)."""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import override

from lit_airlora.callbacks.soft import SOFT
from lit_airlora.channel.checks import check_int_at_least, check_nonnegative, check_positive
from lit_airlora.channel.fading import RayleighBlock, SmallScale
from lit_airlora.channel.large_scale import FixedSNR, LargeScale
from lit_airlora.compression.base import check_rho
from lit_airlora.compression.soft import adapter_error_model, soft_payload_bits
from lit_airlora.control.fdma import equalise_finish_time
from lit_airlora.control.gains import full_band_snr
from lit_airlora.control.lyapunov import RoundPlan, plan_round, schedule_clients, update_queue
from lit_airlora.control.structural_rank import RankBound, structural_rank
from lit_airlora.federated.stages import StageCallback, StageDriver
from lit_airlora.federated.upload import RoundContext
from lit_airlora.lora.layers import adapter_tensors, find_lora_layers

#: Key separating TSFA's channel draws from other users of the same seed.
CHANNEL_KEY = 0x75FA


class TSFA(StageCallback):
    """Two-stage federated adaptation (TSFA) of SOFT over an FDMA uplink.

    Kim & Choi, arXiv 2505.00333. Offline (at fit start) the structural rank ``r*`` is fixed:
    ``structural_rank`` if given, else the minimiser over ``1..max_rank`` of the bound surrogate
    ``J(r) = c_a r^-gamma + (c_cov + c_pay) r`` with the constants of ``rank_bound``
    (:class:`~lit_airlora.control.structural_rank.RankBound`); it is set through
    ``pl_module.set_ranks``. The paper estimates those constants from a pilot; here they are
    user constants, so ``r*`` is a function of the configuration, not a measurement (log
    ``tsfa/rank`` and state that when reporting it). Online, at the start of round ``t``, each
    client's full-band SNR is drawn (``large_scale`` SNR times the mean ``|h|^2`` of a
    ``small_scale`` block), and for every ``rho`` of ``rho_grid`` the FDMA shares that equalise
    finish times
    ``T_k = T_k^cmp + S(rho, r*) / (beta_k W log2(1 + snr_k / beta_k))`` are found by
    bisection (:mod:`lit_airlora.control.fdma`); ``rho_t`` minimises
    ``V E_sp(rho) + Q(t) T(rho)`` (drift-plus-penalty) and the virtual queue becomes
    ``Q(t+1) = max(Q(t) + T^t - T_bar, 0)``, which keeps the time-average round latency at or
    under ``T_bar``. ``S(rho, r)`` is SOFT's payload (kept components in float32 plus an
    ``r``-bit mask per module); ``E_sp(rho)`` is the relative energy of the dropped components
    under orthogonality, from the importance profile ``s_i`` of the global adapter at round
    start (uniform when all ``s_i`` are zero), averaged over modules. With ``schedule_clients``
    the clients needing the most bandwidth are dropped while even the sparsest ``rho`` would
    exceed ``T_bar`` (deep fades; at least ``min_clients`` stay), before ``rho`` is chosen for
    the others; their uploads are removed at the encode stage.

    A budget no allocation can meet fails at fit start: the minimum feasible ``T_bar`` is the
    equalised latency of round 0's clients at their mean SNR (``E|h|^2 = 1``) with the sparsest
    ``rho`` of the grid (and only the best ``min_clients`` when scheduling).

    Channel draws are seeded by ``(seed, round, client)``: a resumed run redraws the same
    channels; the checkpoint holds the queue and latency totals.

    Logs ``tsfa/rho``, ``tsfa/queue`` (after the update), ``tsfa/round_latency_s``,
    ``tsfa/avg_latency_s``, ``tsfa/bandwidth_share_min``, ``tsfa/error_model``,
    ``tsfa/scheduled_clients``, ``tsfa/rank``.

    Args:
        latency_budget_s: Long-term average round latency ``T_bar`` in seconds.
        bandwidth_hz: Total uplink bandwidth ``W`` shared by FDMA.
        large_scale: Mean SNR of each client over the whole band (default: 10 dB for all).
        small_scale: Block fading, unit mean power (default: Rayleigh).
        compute_time_s: Local computation time ``T_cmp`` per round, one value or one per
            client id.
        penalty_weight: ``V``, the weight of the (relative) sparsification error against
            ``Q(t) T`` in s^2: scale it with the square of typical round latencies.
        rho_grid: Candidate sparsity ratios, each in ``[0, 1)`` (default ``0, 0.1, ..., 0.9``).
        structural_rank: Fixed ``r*``; ``None`` minimises the bound of ``rank_bound``.
        rank_bound: Constants of the rank bound (default :class:`RankBound` defaults).
        num_clients: Clients of every round when the module publishes no round plan (with
            ``FederatedLoRAModule``, the plan's clients are used).
        schedule_clients: Drop the clients that keep the sparsest round over ``T_bar``.
        min_clients: Clients always kept by scheduling.
        seed: Seed of the channel draws.
    """

    stage = "encode"  # it drops the unscheduled clients' uploads

    def __init__(
        self,
        latency_budget_s: float,
        bandwidth_hz: float = 1e6,
        large_scale: LargeScale | None = None,
        small_scale: SmallScale | None = None,
        compute_time_s: float | list[float] = 0.0,
        penalty_weight: float = 1.0,
        rho_grid: list[float] | None = None,
        structural_rank: int | None = None,
        rank_bound: RankBound | None = None,
        num_clients: int | None = None,
        schedule_clients: bool = False,
        min_clients: int = 1,
        seed: int = 0,
    ):
        check_positive("latency_budget_s", latency_budget_s)
        check_positive("bandwidth_hz", bandwidth_hz)
        check_nonnegative("penalty_weight", penalty_weight)
        for value in compute_time_s if isinstance(compute_time_s, list) else [compute_time_s]:
            check_nonnegative("compute_time_s", value)
        for name, value in (("structural_rank", structural_rank), ("num_clients", num_clients)):
            if value is not None:
                check_int_at_least(name, value, 1)
        check_int_at_least("min_clients", min_clients, 1)
        self.latency_budget_s = float(latency_budget_s)
        self.bandwidth_hz = float(bandwidth_hz)
        self.large_scale = large_scale or FixedSNR(10.0)
        self.small_scale = small_scale or RayleighBlock()
        self.compute_time_s = compute_time_s
        self.penalty_weight = float(penalty_weight)
        self.rho_grid = _check_rho_grid(
            [i / 10 for i in range(10)] if rho_grid is None else rho_grid
        )
        self.structural_rank = structural_rank
        self.rank_bound = rank_bound or RankBound()
        self.num_clients = num_clients
        self.schedule_clients = schedule_clients
        self.min_clients = int(min_clients)
        self.seed = int(seed)
        self.rank: int | None = None
        self.dims: list[tuple[int, int]] = []
        self.queue_s = 0.0
        self.latency_sum_s = 0.0
        self.num_rounds = 0
        self.rho = self.rho_grid[0]
        self.bandwidth_shares: dict[int, float] = {}
        self.dropped_clients: list[int] = []
        self._soft: SOFT | None = None
        self._metrics: dict[str, float] = {}

    # -- Lightning hooks -----------------------------------------------------------------------
    @override
    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        self._soft = _find_soft(trainer.callbacks)
        if not callable(getattr(pl_module, "set_ranks", None)):
            raise TypeError(
                f"TSFA needs `{type(pl_module).__name__}.set_ranks(ranks: dict[str, int], "
                "truncate=...)` to fix the structural rank (FederatedLoRAModule provides it)."
            )

    @override
    def on_fit_start(self, trainer, pl_module) -> None:
        layers = getattr(pl_module, "lora_layers", None) or find_lora_layers(pl_module)
        self.dims = [(f.lora_A.shape[1], f.lora_B.shape[0]) for f in layers.values()]
        max_rank = next(iter(layers.values())).max_rank
        self.rank = self._offline_rank(max_rank)
        pl_module.set_ranks(dict.fromkeys(layers, self.rank), truncate="importance")
        self._check_budget(pl_module)

    # -- stage protocol ------------------------------------------------------------------------
    @override
    def on_round_start(self, trainer, pl_module, round_idx: int) -> None:
        clients = self._round_clients(pl_module, round_idx)
        # At round start the LoRA layers hold the global adapter.
        layers = getattr(pl_module, "lora_layers", None) or find_lora_layers(pl_module)
        adapter = adapter_tensors(layers)
        errors = adapter_error_model(adapter, self._require_rank(), self.rho_grid)
        plan = plan_round(
            errors,
            torch.tensor([self.payload_bits(rho) for rho in self.rho_grid], dtype=torch.float64),
            self._compute_s(clients),
            full_band_snr(self.large_scale, self.small_scale, clients, self._keys(round_idx)),
            self.bandwidth_hz,
            self.queue_s,
            self.penalty_weight,
            self.latency_budget_s if self.schedule_clients else None,
            self.min_clients,
        )
        self._commit(clients, plan, float(errors[plan.index]))

    @override
    def on_upload_encode(self, trainer, pl_module, ctx: RoundContext) -> None:
        """Drop unscheduled clients; give the others their share (a digital uplink uses it)."""
        if self.dropped_clients:
            dropped = set(self.dropped_clients)
            ctx.uploads = [u for u in ctx.uploads if u.client_id not in dropped]
        ctx.uploads = [
            u.replace(meta={**u.meta, "bandwidth_share": self.bandwidth_shares[u.client_id]})
            if u.client_id in self.bandwidth_shares
            else u
            for u in ctx.uploads
        ]
        ctx.metrics.update(self._metrics)

    # -- maths on the callback's configuration -------------------------------------------------
    def payload_bits(self, rho: float) -> int:
        """SOFT's uplink bits per client at ratio ``rho`` and the structural rank."""
        return soft_payload_bits(rho, self._require_rank(), self.dims)

    def minimum_budget_s(self, clients: list[int]) -> float:
        """Latency of the sparsest ``rho`` at mean SNR (the smallest feasible ``T_bar``)."""
        snr = full_band_snr(self.large_scale, None, clients, self._keys(0))
        payload = float(self.payload_bits(max(self.rho_grid)))
        compute_s = self._compute_s(clients)
        if self.schedule_clients:  # a zero budget makes scheduling keep the best min_clients
            kept = schedule_clients(
                payload, compute_s, snr, self.bandwidth_hz, 0.0, self.min_clients
            )
            compute_s, snr = compute_s[kept], snr[kept]
        latency_s, _ = equalise_finish_time(
            torch.tensor([payload]), compute_s, snr, self.bandwidth_hz
        )
        return float(latency_s[0])

    # -- state ---------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, float | int]:
        return {
            "queue_s": self.queue_s,
            "latency_sum_s": self.latency_sum_s,
            "num_rounds": self.num_rounds,
            "rho": self.rho,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, float | int]) -> None:
        self.queue_s = float(state_dict["queue_s"])
        self.latency_sum_s = float(state_dict["latency_sum_s"])
        self.num_rounds = int(state_dict["num_rounds"])
        self.rho = float(state_dict["rho"])

    # -- internals -----------------------------------------------------------------------------
    def _offline_rank(self, max_rank: int) -> int:
        if self.structural_rank is None:
            return structural_rank(self.rank_bound, max_rank)
        if self.structural_rank > max_rank:
            raise ValueError(
                f"`structural_rank` ({self.structural_rank}) must be <= the module's max_rank "
                f"({max_rank})."
            )
        return self.structural_rank

    def _check_budget(self, pl_module) -> None:
        clients = self._round_clients(pl_module, 0)
        if self.min_clients > len(clients):
            raise ValueError(
                f"`min_clients` ({self.min_clients}) exceeds the clients per round "
                f"({len(clients)}): a round never has that many; lower it."
            )
        minimum_s = self.minimum_budget_s(clients)
        if self.latency_budget_s < minimum_s:
            raise ValueError(
                f"`latency_budget_s` ({self.latency_budget_s}) is below the minimum feasible "
                f"round latency {minimum_s:.6g} s (rho={max(self.rho_grid)}, rank={self.rank}, "
                f"mean SNR, W={self.bandwidth_hz:g} Hz): raise it to at least {minimum_s:.6g}, "
                "or raise `bandwidth_hz` or the largest `rho_grid` value."
            )

    def _round_clients(self, pl_module, round_idx: int) -> list[int]:
        # Our module publishes round 0's plan at setup, so the budget check at fit start (which
        # must fail before the run starts) reads the plan too.
        plan = pl_module.round_plan if isinstance(pl_module, StageDriver) else None
        if plan is not None and plan.round_idx == round_idx:
            return list(plan.clients)
        if self.num_clients is None:
            raise ValueError(
                "TSFA needs `num_clients` in a module that publishes no round plan (only "
                "FederatedLoRAModule does): set it to the clients of a round."
            )
        return list(range(self.num_clients))

    def _compute_s(self, clients: list[int]) -> Tensor:
        values = (
            self.compute_time_s if isinstance(self.compute_time_s, list) else [self.compute_time_s]
        )
        return torch.tensor([float(values[k % len(values)]) for k in clients], dtype=torch.float64)

    def _keys(self, round_idx: int) -> tuple[int, ...]:
        return (self.seed, CHANNEL_KEY, round_idx)

    def _commit(self, clients: list[int], plan: RoundPlan, error: float) -> None:
        """Apply the round's plan: SOFT's rho, the queue, the allocation and the metrics."""
        self.rho = self.rho_grid[plan.index]
        self._require_soft().set_rho(self.rho)
        self.queue_s = update_queue(self.queue_s, plan.latency_s, self.latency_budget_s)
        self.latency_sum_s += plan.latency_s
        self.num_rounds += 1
        scheduled = [c for c, keep in zip(clients, plan.kept.tolist(), strict=True) if keep]
        self.bandwidth_shares = dict(zip(scheduled, plan.shares.tolist(), strict=True))
        self.dropped_clients = [c for c in clients if c not in self.bandwidth_shares]
        self._metrics = {
            "tsfa/rho": self.rho,
            "tsfa/queue": self.queue_s,
            "tsfa/round_latency_s": plan.latency_s,
            "tsfa/avg_latency_s": self.latency_sum_s / self.num_rounds,
            "tsfa/bandwidth_share_min": float(plan.shares.min()),
            "tsfa/error_model": error,
            "tsfa/scheduled_clients": float(len(scheduled)),
            "tsfa/rank": float(self._require_rank()),
        }

    def _require_rank(self) -> int:
        if self.rank is None:
            raise RuntimeError("TSFA's structural rank is set at fit start; run it in a Trainer.")
        return self.rank

    def _require_soft(self) -> SOFT:
        if self._soft is None:
            raise RuntimeError("TSFA found no SOFT callback: it is looked up in `setup`.")
        return self._soft


def _find_soft(callbacks) -> SOFT:
    found = [callback for callback in callbacks if isinstance(callback, SOFT)]
    if len(found) != 1:
        raise ValueError(
            f"TSFA controls exactly one SOFT callback, found {len(found)} in `trainer.callbacks`: "
            "add `lit_airlora.callbacks.soft.SOFT` to the callbacks."
        )
    return found[0]


def _check_rho_grid(rho_grid: list[float]) -> list[float]:
    if not rho_grid:
        raise ValueError("`rho_grid` ([]) must hold at least one ratio in [0, 1).")
    bad = [rho for rho in rho_grid if not 0.0 <= float(rho) < 1.0]
    if bad:
        raise ValueError(
            f"`rho_grid` ({list(rho_grid)}) holds {bad[0]}: every ratio must be in [0, 1) "
            "(the fraction of the payload dropped; 0 sends everything)."
        )
    return sorted(check_rho(rho) for rho in rho_grid)
