"""Receive beamformers for multi-stream AirComp, chosen in YAML by ``class_path``.

A beamformer returns unit-Frobenius-norm ``A~_m`` (``N_r x S``) per subcarrier; the power
scaling and zero-forcing precoders follow (:func:`lit_airlora.channel.mimo.mimo_plan`), and the
aggregation MSE is ``sigma^2 zeta_m`` with ``zeta_m = max_k c_k tr[(A~^H H_k H_k^H A~)^{-1}]``
(``c_k = w_k^2 / P_k``): the objective every beamformer here is judged by.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_airlora.channel.checks import check_int_at_least, check_positive
from lit_airlora.channel.mimo import beamforming_cost, stream_traces


class Beamformer:
    """Base class: unit-norm receive beamformers for the participating clients' channels."""

    def __call__(
        self,
        channels: Tensor,
        cost_weights: Tensor,
        num_streams: int,
        generator: torch.Generator,
    ) -> Tensor:
        """Beamformers for one round.

        Args:
            channels: ``[K, M, N_r, N_t]`` effective channels of the participants, complex128.
            cost_weights: ``[K]`` ``c_k = w_k^2 / P_k``.
            num_streams: Streams ``S`` per subcarrier.
            generator: Source of randomness (for randomised beamformers), on the channels' device.

        Returns:
            ``[M, N_r, S]`` complex128 with ``||A~_m||_F = 1`` for every ``m``.
        """
        raise NotImplementedError


def normalise_frobenius(combiner: Tensor) -> Tensor:
    """Scale each ``[N_r, S]`` matrix of ``[M, N_r, S]`` to unit Frobenius norm."""
    norm = torch.linalg.matrix_norm(combiner, ord="fro")  # (M,)
    return combiner / norm[:, None, None].to(combiner.dtype)


class RandomBeamformer(Beamformer):
    """Baseline: i.i.d. complex Gaussian beamformers, normalised (ignores the channels)."""

    def __call__(self, channels, cost_weights, num_streams, generator) -> Tensor:
        shape = (channels.shape[1], channels.shape[2], num_streams)
        draw = torch.randn(
            shape, dtype=torch.complex128, generator=generator, device=channels.device
        )
        return normalise_frobenius(draw)


class MatchedFilterBeamformer(Beamformer):
    """Baseline: the ``S`` principal eigenvectors of ``sum_k H_km H_km^H / ||H_km||_F^2``.

    Each client's channel is normalised first, so weak clients (the ones that limit ``zeta``)
    shape the receive subspace as much as strong ones [assumed]; the eigenvectors are scaled to
    unit Frobenius norm.
    """

    def __call__(self, channels, cost_weights, num_streams, generator) -> Tensor:
        power = torch.linalg.matrix_norm(channels, ord="fro") ** 2  # (K, M)
        covariance = (channels @ channels.mH / power[..., None, None]).sum(dim=0)  # (M, N_r, N_r)
        _, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
        return normalise_frobenius(vectors[..., -num_streams:].to(torch.complex128))


class ManifoldBeamformer(Beamformer):
    """Riemannian optimisation of ``A~`` on the unit-Frobenius sphere (AirFL-LoRA, Sun et al.,
    IEEE TWC 2025).

    Minimises, per subcarrier, a smooth log-sum-exp surrogate of the worst client's
    ``log(c_k tr[(A~^H H_k H_k^H A~)^{-1}])`` (temperature ``temperature``; the log makes the
    objective scale-free) with Riemannian Adam (``geoopt.Sphere``, ``geoopt.optim.RiemannianAdam``)
    from the matched-filter beamformer. It keeps, per subcarrier, the best iterate by the exact
    max objective, so it never does worse than its matched-filter start.

    Args:
        num_steps: Riemannian Adam steps.
        learning_rate: Step size on the sphere.
        temperature: Smoothing of the max (in nats of the log objective); smaller is closer.
    """

    def __init__(
        self, num_steps: int = 100, learning_rate: float = 0.1, temperature: float = 0.05
    ) -> None:
        check_int_at_least("num_steps", num_steps, 0)
        check_positive("learning_rate", learning_rate)
        check_positive("temperature", temperature)
        self.num_steps, self.learning_rate = num_steps, float(learning_rate)
        self.temperature = float(temperature)

    def __call__(self, channels, cost_weights, num_streams, generator) -> Tensor:
        start = MatchedFilterBeamformer()(channels, cost_weights, num_streams, generator)
        best = start.clone()
        best_cost = beamforming_cost(channels, best, cost_weights)  # (M,)
        if self.num_steps == 0:
            return best
        with torch.enable_grad():
            for candidate in self._iterates(channels, cost_weights, start):
                cost = beamforming_cost(channels, candidate, cost_weights)
                better = cost < best_cost
                best = torch.where(better[:, None, None], candidate, best)
                best_cost = torch.minimum(cost, best_cost)
        return best

    def _iterates(self, channels: Tensor, cost_weights: Tensor, start: Tensor):
        """Yield the (detached, normalised) beamformers of each Riemannian Adam step."""
        import geoopt

        shape = start.shape
        point = torch.view_as_real(start).reshape(shape[0], -1)  # (M, 2 N_r S) on the sphere
        param = geoopt.ManifoldParameter(point.clone(), manifold=geoopt.Sphere())
        optimizer = geoopt.optim.RiemannianAdam([param], lr=self.learning_rate)
        log_c = cost_weights.log()[:, None]  # (K, 1)
        for _ in range(self.num_steps):
            optimizer.zero_grad()
            combiner = torch.view_as_complex(param.view(*shape, 2))
            log_cost = log_c + stream_traces(channels, combiner).log()  # (K, M)
            loss = self.temperature * torch.logsumexp(log_cost / self.temperature, dim=0).sum()
            if not torch.isfinite(loss):
                return
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                yield normalise_frobenius(torch.view_as_complex(param.detach().view(*shape, 2)))
