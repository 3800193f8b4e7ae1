"""Small-scale fading: per-client channel matrices per subcarrier for one coherence block.

Every model returns ``h: [K, num_rx, num_tx, num_subcarriers]``, complex64, with unit average
power per entry (``E|h|^2 = 1``), so the large-scale SNR (:mod:`lit_airlora.channel.large_scale`)
fixes the mean received SNR. One draw is one block (one round of one client). Sionna blocks are
built lazily, on the device of the first draw (or in :meth:`SmallScale.setup`), never at import
or in ``__init__``, because Sionna pins a device string at construction.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_airlora.channel.checks import (
    check_int_at_least,
    check_nonnegative,
    check_positive,
    check_unit_interval,
)
from lit_airlora.channel.seeding import sionna_device, sionna_generator
from lit_airlora.init_args import RecordsInitArgs
from lit_airlora.seeding import make_generator

#: TDL profiles of 3GPP TR 38.901 known to Sionna (the suffixed ones have a fixed delay spread).
TDL_MODELS = ("A", "B", "C", "D", "E", "A10", "A30", "B100", "C60", "C300", "D10", "D30")
#: CDL profiles of 3GPP TR 38.901 known to Sionna.
CDL_MODELS = ("A", "B", "C", "D", "E")


class SmallScale(RecordsInitArgs):
    """Base class: unit-power small-scale fading of one block per client.

    Attributes:
        num_rx: Receive (server) antennas.
        num_tx: Transmit (client) antennas.
        num_subcarriers: Subcarriers of the OFDM grid (1 for flat fading).
    """

    num_rx: int = 1
    num_tx: int = 1
    num_subcarriers: int = 1

    def setup(self, device: torch.device | str) -> None:
        """Build any Sionna blocks on ``device`` (idempotent; :meth:`draw` calls it too)."""

    def draw(
        self, num_clients: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> Tensor:
        """Draw one block per client.

        Args:
            num_clients: Number of channels ``K`` to draw.
            generator: Source of randomness, on ``device``.
            device: Device of the output.

        Returns:
            ``h: [K, num_rx, num_tx, num_subcarriers]``, complex64.
        """
        raise NotImplementedError

    def draw_clients(
        self, client_ids: list[int], keys: tuple[int, ...], device: torch.device | str = "cpu"
    ) -> Tensor:
        """One block per client from a generator seeded by ``(*keys, client_id)``.

        A client's channel then depends only on the keys and its id, not on which other clients
        share the round or which DDP rank simulates it, so every rank can rebuild every channel.

        Returns:
            ``h: [len(client_ids), num_rx, num_tx, num_subcarriers]``, complex64.
        """
        draws = [
            self.draw(1, make_generator(*keys, int(k), device=device), device) for k in client_ids
        ]
        if not draws:
            shape = (0, self.num_rx, self.num_tx, self.num_subcarriers)
            return torch.zeros(shape, dtype=torch.complex64, device=device)
        return torch.cat(draws)


class AWGN(SmallScale):
    """No fading (``h = 1``): the channel only adds receiver noise."""

    def draw(
        self, num_clients: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> Tensor:
        return torch.ones((num_clients, 1, 1, 1), dtype=torch.complex64, device=device)


class RayleighBlock(SmallScale):
    """Single-antenna Rayleigh block fading: ``h ~ CN(0, 1)``, one draw per client per round."""

    def draw(
        self, num_clients: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> Tensor:
        return torch.randn(
            (num_clients, 1, 1, 1), dtype=torch.complex64, device=device, generator=generator
        )


class _SionnaFading(SmallScale):
    """Common part of the Sionna-backed models: one block per Sionna device, built on demand."""

    def __init__(self) -> None:
        self._blocks: dict[str, object] = {}

    def setup(self, device: torch.device | str) -> None:
        key = sionna_device(device)
        if key not in self._blocks:
            self._blocks[key] = self._build(key)

    def draw(
        self, num_clients: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> Tensor:
        self.setup(device)
        with sionna_generator(generator):
            h = self._sample(self._blocks[sionna_device(device)], num_clients)
        return h.to(torch.complex64)

    def _build(self, device: str) -> object:
        raise NotImplementedError

    def _sample(self, block: object, num_clients: int) -> Tensor:
        raise NotImplementedError

    def __getstate__(self) -> dict:
        # Sionna blocks are rebuilt on the next draw: never pickled into configs or checkpoints.
        state = dict(self.__dict__)
        state["_blocks"] = {}
        return state


class FlatMIMO(_SionnaFading):
    """Flat i.i.d. Rayleigh MIMO fading with optional Kronecker spatial correlation.

    ``H = R_rx^{1/2} G R_tx^{1/2}`` with ``G`` i.i.d. ``CN(0, 1)`` and exponential correlation
    matrices ``[R]_{ij} = rho^{|i-j|}`` (Loyka, 2001), via Sionna's
    ``GenerateFlatFadingChannel`` and ``KroneckerModel``.

    Args:
        num_rx: Server antennas.
        num_tx: Client antennas.
        rx_correlation: Correlation ``rho`` of adjacent receive antennas, in ``[0, 1)``.
        tx_correlation: Correlation ``rho`` of adjacent transmit antennas, in ``[0, 1)``.
    """

    def __init__(
        self, num_rx: int, num_tx: int, rx_correlation: float = 0.0, tx_correlation: float = 0.0
    ) -> None:
        super().__init__()
        check_int_at_least("num_rx", num_rx, 1)
        check_int_at_least("num_tx", num_tx, 1)
        check_unit_interval("rx_correlation", rx_correlation)
        check_unit_interval("tx_correlation", tx_correlation)
        self.num_rx, self.num_tx = num_rx, num_tx
        self.rx_correlation, self.tx_correlation = float(rx_correlation), float(tx_correlation)

    def _build(self, device: str) -> object:
        from sionna.phy.channel import GenerateFlatFadingChannel, KroneckerModel, exp_corr_mat

        spatial_corr = None
        if self.rx_correlation > 0 or self.tx_correlation > 0:
            r_tx = exp_corr_mat(self.tx_correlation, self.num_tx, device=device)
            r_rx = exp_corr_mat(self.rx_correlation, self.num_rx, device=device)
            spatial_corr = KroneckerModel(r_tx, r_rx, device=device)
        return GenerateFlatFadingChannel(
            self.num_tx, self.num_rx, spatial_corr=spatial_corr, device=device
        )

    def _sample(self, block: object, num_clients: int) -> Tensor:
        return block(num_clients).unsqueeze(-1)  # (K, N_r, N_t, 1)


class _OFDMFading(_SionnaFading):
    """A 3GPP channel model sampled on an OFDM resource grid of one OFDM symbol."""

    #: Profile names the subclass's Sionna model accepts.
    models: tuple[str, ...] = ()

    def __init__(
        self,
        model: str = "A",
        delay_spread_s: float = 100e-9,
        num_subcarriers: int = 64,
        subcarrier_spacing_hz: float = 30e3,
        carrier_frequency_hz: float = 3.5e9,
        num_rx: int = 1,
        num_tx: int = 1,
        max_speed_mps: float = 0.0,
    ) -> None:
        super().__init__()
        if model not in self.models:
            raise ValueError(
                f"`model` ({model!r}) must be one of the {type(self).__name__} profiles "
                f"{self.models}."
            )
        check_positive("delay_spread_s", delay_spread_s)
        check_int_at_least("num_subcarriers", num_subcarriers, 1)
        check_positive("subcarrier_spacing_hz", subcarrier_spacing_hz)
        check_positive("carrier_frequency_hz", carrier_frequency_hz)
        check_int_at_least("num_rx", num_rx, 1)
        check_int_at_least("num_tx", num_tx, 1)
        check_nonnegative("max_speed_mps", max_speed_mps)
        self.model, self.delay_spread_s = model, float(delay_spread_s)
        self.num_subcarriers = num_subcarriers
        self.subcarrier_spacing_hz = float(subcarrier_spacing_hz)
        self.carrier_frequency_hz = float(carrier_frequency_hz)
        self.num_rx, self.num_tx, self.max_speed_mps = num_rx, num_tx, float(max_speed_mps)

    def _build(self, device: str) -> object:
        from sionna.phy.channel import GenerateOFDMChannel
        from sionna.phy.ofdm import ResourceGrid

        grid = ResourceGrid(
            num_ofdm_symbols=1,
            fft_size=self.num_subcarriers,
            subcarrier_spacing=self.subcarrier_spacing_hz,
            device=device,
        )
        # No per-realisation normalisation: the profiles have unit total power, so the average
        # power is one while each block keeps its own frequency-selective fade.
        return GenerateOFDMChannel(
            self._model(device), grid, normalize_channel=False, device=device
        )

    def _model(self, device: str) -> object:
        raise NotImplementedError

    def _sample(self, block: object, num_clients: int) -> Tensor:
        h = block(num_clients)  # (K, 1, N_r, 1, N_t, 1 OFDM symbol, M)
        return h[:, 0, :, 0, :, 0, :]  # (K, N_r, N_t, M)


class OFDMTDL(_OFDMFading):
    """3GPP TR 38.901 tapped-delay-line channel on an OFDM grid (Sionna ``tr38901.TDL``).

    The TDL taps (sum-of-sinusoids Rayleigh/Rician taps with the model's power-delay profile)
    are turned into a per-subcarrier frequency response by ``GenerateOFDMChannel``.

    Args:
        model: TDL profile, one of :data:`TDL_MODELS`.
        delay_spread_s: RMS delay spread in seconds (ignored by fixed-delay profiles).
        num_subcarriers: Subcarriers ``M`` of the grid.
        subcarrier_spacing_hz: Subcarrier spacing in Hz.
        carrier_frequency_hz: Carrier frequency in Hz.
        num_rx: Server antennas.
        num_tx: Client antennas.
        max_speed_mps: Largest client speed in m/s (Doppler within the block; 0 = static).
    """

    models = TDL_MODELS

    def _model(self, device: str) -> object:
        from sionna.phy.channel.tr38901 import TDL

        fixed_delay = any(ch.isdigit() for ch in self.model)
        return TDL(
            self.model,
            delay_spread=None if fixed_delay else self.delay_spread_s,
            carrier_frequency=self.carrier_frequency_hz,
            max_speed=self.max_speed_mps,
            num_rx_ant=self.num_rx,
            num_tx_ant=self.num_tx,
            device=device,
        )


class OFDMCDL(_OFDMFading):
    """3GPP TR 38.901 clustered-delay-line uplink channel on an OFDM grid (Sionna ``tr38901.CDL``).

    Clients and server carry uniform linear arrays of omnidirectional, vertically polarised
    elements at half-wavelength spacing [assumed]; the CDL clusters (angles, delays, powers of
    the profile) give spatially and frequency-correlated MIMO channels.

    Args:
        model: CDL profile, one of :data:`CDL_MODELS`.
        delay_spread_s: RMS delay spread in seconds.
        num_subcarriers: Subcarriers ``M`` of the grid.
        subcarrier_spacing_hz: Subcarrier spacing in Hz.
        carrier_frequency_hz: Carrier frequency in Hz.
        num_rx: Server antennas.
        num_tx: Client antennas.
        max_speed_mps: Largest client speed in m/s (0 = static).
    """

    models = CDL_MODELS

    def _model(self, device: str) -> object:
        from sionna.phy.channel.tr38901 import CDL, AntennaArray

        def array(num_ant: int) -> object:
            return AntennaArray(
                num_rows=1,
                num_cols=num_ant,
                polarization="single",
                polarization_type="V",
                antenna_pattern="omni",
                carrier_frequency=self.carrier_frequency_hz,
                device=device,
            )

        return CDL(
            self.model,
            self.delay_spread_s,
            self.carrier_frequency_hz,
            ut_array=array(self.num_tx),
            bs_array=array(self.num_rx),
            direction="uplink",
            max_speed=self.max_speed_mps,
            device=device,
        )
