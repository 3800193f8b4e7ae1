"""pAirZero's uplinks: zeroth-order scalars aggregated over the air, analog or as a sign vote."""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from lit_airlora.channel import scalar_aircomp as air
from lit_airlora.channel.checks import check_finite, check_positive
from lit_airlora.channel.fading import SmallScale
from lit_airlora.channel.large_scale import LargeScale
from lit_airlora.channel.seeding import make_generator
from lit_airlora.channel.units import db_to_amplitude, lin_to_db
from lit_airlora.federated.stages import StageCallback
from lit_airlora.federated.upload import RoundContext
from lit_airlora.zeroth_order.local_update import SCALAR_KEY
from lit_airlora.zeroth_order.privacy import (
    PrivacyAccountant,
    PrivacyBudget,
    plan_noise_multipliers,
)

#: Keys mixed into the callback's seeds, one per independent random stream.
SNR_STREAM, FADING_STREAM, NOISE_STREAM, AN_STREAM = 1, 2, 3, 5


class ScalarOverTheAir(StageCallback):
    """Base of the scalar uplinks: every participant's ``S`` values cross the air at once.

    Per round (all draws from generators seeded by the round seed, so every DDP rank computes
    the same estimate): each client's single-antenna channel ``h_k`` is drawn; clients below
    ``min_gain_db`` sit the round out; the others invert their channels to the common received
    scale ``c = h_min / x_max`` (:mod:`lit_airlora.channel.scalar_aircomp`) and add their share of
    the artificial noise; the server receives ``y = c sum_k x_k + AN + w``. With a privacy
    budget, the artificial-noise power of each round is set, before anything is drawn, so that
    the round is the Gaussian mechanism the budget's schedule planned
    (:mod:`lit_airlora.zeroth_order.privacy`); a budget the link cannot meet is refused at
    setup. Without one, only the receiver noise protects the scalars and the epsilon it gives is
    still reported. Logs ``privacy/epsilon`` (at ``delta``), ``privacy/noise_multiplier``,
    ``privacy/artificial_noise_power``, ``channel/participating``, ``channel/scale``, the
    uplink bits per scalar through the ledger, and the costs of the round in the units of the
    other channel callbacks: ``comm/channel_uses`` (``S``: one symbol per scalar, all clients at
    once), ``comm/airtime_s = S / bandwidth_hz`` and ``comm/energy_j``, the participants' summed
    ``tx_power_w * sum_s |b_k (c x_ks + a_ks)|^2 / bandwidth_hz`` (``b_k = 1 / h_k``: what the
    channel inversion actually transmits, artificial noise included; 0 when nobody transmits).

    Args:
        large_scale: Per-client average SNR model (e.g. ``FixedSNR``).
        fading: Single-antenna, flat small-scale fading (``AWGN`` or ``RayleighBlock``).
        min_gain_db: Truncation threshold on the power gain ``|h_k|^2`` (dB, relative to the
            receiver noise at full power): below it a client does not transmit.
        privacy: The run's (epsilon, delta) budget and schedule (``None``: no artificial noise).
        delta: Delta at which epsilon is reported without a budget.
        max_artificial_noise_db: Most artificial-noise power the clients can add together at the
            receiver, in dB above the receiver noise.
        receiver_noise: Add receiver noise (``False``: the Perfect channel).
        tx_power_w: Full transmit power ``P`` of a client in watts (energy accounting).
        bandwidth_hz: Symbol rate of the uplink in Hz: one symbol lasts ``1 / bandwidth_hz``.
        seed: Seed mixed with the round seed for this channel's draws.
    """

    stage = "transmit"
    aggregates = True  # over the air: the channel delivers the estimate of the mean
    #: Bits per scalar on the ledger.
    bits_per_value: float = 16.0

    def __init__(
        self,
        large_scale: LargeScale,
        fading: SmallScale,
        min_gain_db: float = 0.0,
        privacy: PrivacyBudget | None = None,
        delta: float = 0.01,
        max_artificial_noise_db: float = 30.0,
        receiver_noise: bool = True,
        tx_power_w: float = 0.2,
        bandwidth_hz: float = 1.0e6,
        seed: int = 0,
    ) -> None:
        _check_type("large_scale", large_scale, LargeScale)
        check_positive("tx_power_w", tx_power_w)
        check_positive("bandwidth_hz", bandwidth_hz)
        _check_type("fading", fading, SmallScale)
        _check_single_antenna(fading)
        check_finite("min_gain_db", min_gain_db)
        check_finite("max_artificial_noise_db", max_artificial_noise_db)
        if privacy is not None:
            _check_type("privacy", privacy, PrivacyBudget)
            delta = privacy.delta
        elif not (isinstance(delta, (int, float)) and 0 < delta < 1):
            raise ValueError(f"`delta` ({delta!r}) must be in (0, 1), e.g. 0.01.")
        self.large_scale, self.fading = large_scale, fading
        self.min_gain_db, self.privacy = float(min_gain_db), privacy
        self.max_artificial_noise_db = float(max_artificial_noise_db)
        self.receiver_noise, self.seed = bool(receiver_noise), int(seed)
        self.tx_power_w, self.bandwidth_hz = float(tx_power_w), float(bandwidth_hz)
        self.accountant = PrivacyAccountant(delta)
        self.plan: list[float] = []

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(seed=self.seed)

    def max_abs(self, pl_module: LightningModule) -> float:
        """Largest value a client sends (the clip ``gamma``; 1 for signs)."""
        return float(pl_module.zeroth_order.clip)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if getattr(pl_module, "zeroth_order", None) is None:
            raise ValueError(
                f"{type(self).__name__} sends zeroth-order scalars: give the module "
                "`zeroth_order: {class_path: lit_airlora.zeroth_order.ZerothOrder}`."
            )
        _check_no_digital_link(self, trainer)
        super().setup(trainer, pl_module, stage)
        self.fading.setup(pl_module.device)
        self._max_abs = self.max_abs(pl_module)
        self.scale = air.inversion_scale(self.min_gain_db, self._max_abs)
        self.num_values = pl_module.zeroth_order.num_perturbations
        if self.privacy is not None and stage == "fit":
            self.plan = self._plan(trainer.max_epochs)

    def _plan(self, num_rounds: int | None) -> list[float]:
        if not (isinstance(num_rounds, int) and num_rounds >= 1):
            raise ValueError(
                f"`trainer.max_epochs` ({num_rounds!r}) must be a number of rounds >= 1 to spend "
                "a privacy budget over."
            )
        from sionna.phy.utils import db_to_lin  # lazy: Sionna costs seconds to import

        artificial = float(
            db_to_lin(self.max_artificial_noise_db, precision="double", device="cpu")
        )
        noise_var = self._receiver_noise_var() + air.SIGMA_W2 * artificial
        z_max = air.noise_multiplier(self.scale, self._max_abs, self.num_values, noise_var)
        return plan_noise_multipliers(self.privacy, num_rounds, z_max)

    def on_upload_transmit(
        self, trainer: Trainer, pl_module: LightningModule, ctx: RoundContext
    ) -> None:
        """Send every upload's scalars over the air and set ``ctx.aggregate`` to the estimate."""
        keys = (ctx.generator_seed, self.seed)
        device = ctx.ideal_aggregate[SCALAR_KEY].device
        channels = self._draw_channels(ctx.round_clients, keys, device)  # (K,) complex128
        part = air.participating(channels, self.min_gain_db)
        num_part = int(part.sum())
        noise_power = self._artificial_noise_power(ctx.round_idx)
        index = {c: i for i, c in enumerate(ctx.round_clients)}
        sent = [u for u in ctx.uploads if bool(part[index[u.client_id]])]
        values = self._encode(_stack(sent, device, self.num_values))  # (K_loc, S)
        y, energy = air.transmit(
            channels[[index[u.client_id] for u in sent]], values, self.scale, noise_power,
            num_part, [make_generator(*keys, AN_STREAM, u.client_id) for u in sent],
        )  # fmt: skip
        reduced = ctx.reduce(
            {"y_re": y.real, "y_im": y.imag, "clean": values.sum(0), "energy": energy.sum()[None]}
        )
        noise = make_generator(*keys, NOISE_STREAM) if self.receiver_noise else None
        received = air.receive(torch.complex(reduced["y_re"], reduced["y_im"]), noise)
        estimate = self._decode(received, reduced["clean"], num_part, ctx)
        ctx.aggregate = {SCALAR_KEY: estimate.to(torch.float32)}
        ctx.uploads = [self._ledger_entry(u, bool(part[index[u.client_id]])) for u in ctx.uploads]
        ctx.metrics.update(self._metrics(channels, num_part, noise_power))
        ctx.metrics.update(self._costs(num_part, float(reduced["energy"][0])))

    def _draw_channels(self, client_ids: list[int], keys: tuple, device) -> Tensor:
        snr_db = self.large_scale.snr_db(client_ids, make_generator(*keys, SNR_STREAM))
        g = self.fading.draw_clients(client_ids, (*keys, FADING_STREAM), device)  # (K, 1, 1, 1)
        amplitude = db_to_amplitude(snr_db.to(device))
        return amplitude * g[:, 0, 0, 0].to(torch.complex128)

    def _artificial_noise_power(self, round_idx: int) -> float:
        if self.privacy is None:
            return 0.0
        if round_idx >= len(self.plan):
            raise RuntimeError(
                f"Round {round_idx} is beyond the {len(self.plan)} rounds the privacy budget was "
                "planned for (`trainer.max_epochs` at setup)."
            )
        target = self.plan[round_idx]
        noise = air.artificial_noise_power(self.scale, self._max_abs, self.num_values, target)
        return max(0.0, noise + air.SIGMA_W2 - self._receiver_noise_var())

    def _receiver_noise_var(self) -> float:
        return air.SIGMA_W2 if self.receiver_noise else 0.0

    def _metrics(self, channels: Tensor, num_part: int, noise_power: float) -> dict[str, float]:
        noise_var = self._receiver_noise_var() + noise_power
        if num_part:
            z = air.noise_multiplier(self.scale, self._max_abs, self.num_values, noise_var)
            epsilon = self.accountant.compose(z if noise_var > 0 else math.inf)
        else:
            z, epsilon = math.inf, self.accountant.epsilon()  # nothing sent, nothing spent
        return {
            "privacy/epsilon": epsilon,
            "privacy/noise_multiplier": z,
            "privacy/artificial_noise_power": noise_power,
            "channel/participating": float(num_part),
            "channel/truncated": float(len(channels) - num_part),
            "channel/scale": self.scale,
            "channel/snr_db_mean": float(lin_to_db(channels.abs().pow(2)).mean()),
            "comm/bits_per_scalar": self.bits_per_value,
        }

    def _costs(self, num_part: int, energy_units: float) -> dict[str, float]:
        """Channel uses, airtime and energy of the round (``energy_units``: in P x channel use)."""
        channel_uses = float(self.num_values) if num_part else 0.0
        return {
            "comm/channel_uses": channel_uses,
            "comm/airtime_s": channel_uses / self.bandwidth_hz,
            "comm/energy_j": energy_units * self.tx_power_w / self.bandwidth_hz,
        }

    def _ledger_entry(self, upload, sent: bool):
        bits = self.bits_per_value * self.num_values if sent else 0.0
        return upload.replace(meta={**upload.meta, "bits": bits})

    def _encode(self, values: Tensor) -> Tensor:
        """``[K_loc, S]`` float64 clipped scalars -> the real symbols sent."""
        raise NotImplementedError

    def _decode(self, received: Tensor, clean: Tensor, num_part: int, ctx: RoundContext) -> Tensor:
        raise NotImplementedError

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"accountant": self.accountant.state_dict()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.accountant.load_state_dict(state_dict["accountant"])


class AnalogScalarAggregation(ScalarOverTheAir):
    """Analog pAirZero: the clipped scalars (16 bits each on the ledger) are sent as analog
    amplitudes; the server estimates their mean as ``y / (K c)`` and logs the closed-form MSE
    ``(sigma_w^2 + n) / (K c)^2`` as ``channel/agg_mse_theory``.
    """

    bits_per_value = 16.0

    def _encode(self, values: Tensor) -> Tensor:
        return values

    def _decode(self, received: Tensor, clean: Tensor, num_part: int, ctx: RoundContext) -> Tensor:
        if num_part == 0:
            return torch.zeros_like(received)
        noise_power = self._artificial_noise_power(ctx.round_idx)
        ctx.metrics["channel/agg_mse_theory"] = air.analog_mse(
            self.scale, noise_power, num_part, self.receiver_noise
        )
        return air.analog_estimate(received, self.scale, num_part)


class SignScalarAggregation(ScalarOverTheAir):
    """Sign-pAirZero: each client sends ``sign(g_k)`` as BPSK (1 bit per scalar on the ledger)
    with channel inversion; the server takes the sign of the received sum (a majority vote).
    Flips happen in the channel, through the receiver and artificial noise; the fraction of
    votes that differ from the noise-free vote is logged as ``channel/sign_flip_rate``. The
    broadcast is the vote, so the module's ``learning_rate`` is the step per direction.
    """

    bits_per_value = 1.0

    def max_abs(self, pl_module: LightningModule) -> float:
        return 1.0

    def _encode(self, values: Tensor) -> Tensor:
        return air.signs(values)

    def _decode(self, received: Tensor, clean: Tensor, num_part: int, ctx: RoundContext) -> Tensor:
        if num_part == 0:
            return torch.zeros_like(received)
        vote = air.majority_vote(received)
        flips = vote != air.majority_vote(clean)
        ctx.metrics["channel/sign_flip_rate"] = float(flips.double().mean())
        return vote


def _stack(uploads: list, device, num_values: int) -> Tensor:
    if not uploads:
        return torch.zeros((0, num_values), dtype=torch.float64, device=device)
    return torch.stack([u.tensors[SCALAR_KEY].to(device, torch.float64) for u in uploads])


def _check_type(name: str, value: object, cls: type) -> None:
    if not isinstance(value, cls):
        raise TypeError(f"`{name}` ({type(value).__name__}) must be a {cls.__name__}.")


def _check_single_antenna(fading: SmallScale) -> None:
    shape = (fading.num_rx, fading.num_tx, fading.num_subcarriers)
    if shape != (1, 1, 1):
        raise ValueError(
            f"`fading` ({type(fading).__name__}: num_rx, num_tx, num_subcarriers = {shape}) must "
            "be single-antenna flat fading (AWGN or RayleighBlock) for scalar uploads."
        )


def _check_no_digital_link(callback: ScalarOverTheAir, trainer: Trainer) -> None:
    from lit_airlora.callbacks.digital_link import DigitalUplink

    if any(isinstance(c, DigitalUplink) for c in trainer.callbacks):
        raise ValueError(
            f"`{type(callback).__name__}` sends its scalars over the air and cannot be combined "
            "with a `DigitalUplink` (a digital link carries bits, not superposed symbols): "
            "remove one of the two callbacks."
        )
