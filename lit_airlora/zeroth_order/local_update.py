"""The zeroth-order training mode of the federated module (pAirZero's client and server step)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from lit_airlora.federated.upload import Upload
from lit_airlora.init_args import RecordsInitArgs
from lit_airlora.zeroth_order.perturbation import (
    add_direction_,
    clip_scalars,
    direction_seed,
    perturbed,
    projected_gradient,
)

#: Name of the uploaded tensor: one projected-gradient scalar per direction, ``[S]``.
SCALAR_KEY = "zo.projected_gradient"
#: Bits per analog scalar on the ledger (sent as float16, as pAirZero's 16 bits).
ANALOG_BITS = 16


class ZerothOrder(RecordsInitArgs):
    """Zeroth-order local updates: two forward passes per direction, no backward, no optimizer.

    pAirZero (Cai et al., "Three Birds, One Stone", arXiv 2604.12401) on MeZO's estimator. Every
    round shares ``S`` directions ``z_s ~ N(0, I)`` regenerated from the round seed (identical for
    all clients and DDP ranks). Client ``k`` evaluates its minibatches (the round's
    ``local_steps`` batches) at ``theta +- mu z_s`` and uploads
    ``g_ks = clip([L_k(theta + mu z_s) - L_k(theta - mu z_s)] / (2 mu), gamma)`` as float16,
    16 bits per scalar. The server's estimate ``g_s`` (the mean over clients, or what a channel
    callback delivers) is broadcast noise-free and every process applies
    ``theta <- theta - lr / S * sum_s g_s z_s`` from the seeds. Clients count equally (upload
    weight 1), as in the paper's ``y / (K c_t)``. Directions cover the LoRA factors and the
    trained head of a classification task (``"lora"``) or every parameter the forward pass uses
    (``"full"``, the paper's setting).

    Args:
        perturbation_scale: ``mu`` (> 0).
        num_perturbations: Directions ``S`` per round (scalars per client per round, >= 1).
        clip: ``gamma``: each scalar is clipped to ``[-gamma, gamma]`` (> 0).
        learning_rate: Step size of the update (> 0).
        parameters: ``"lora"`` (the LoRA factors and a trained head) or ``"full"`` (all
            parameters).
    """

    def __init__(
        self,
        perturbation_scale: float = 1e-3,
        num_perturbations: int = 1,
        clip: float = 100.0,
        learning_rate: float = 1e-4,
        parameters: Literal["lora", "full"] = "lora",
    ) -> None:
        _check_positive("perturbation_scale", perturbation_scale)
        _check_positive("clip", clip)
        _check_positive("learning_rate", learning_rate)
        if not (isinstance(num_perturbations, int) and num_perturbations >= 1):
            raise ValueError(
                f"`num_perturbations` ({num_perturbations!r}) must be an integer >= 1 (the number "
                "of directions S per round)."
            )
        if parameters not in ("lora", "full"):
            raise ValueError(f"`parameters` ({parameters!r}) must be 'lora' or 'full'.")
        self.mu, self.num_perturbations = float(perturbation_scale), num_perturbations
        self.perturbation_scale = self.mu  # the argument's name, for checkpoint hyperparameters
        self.clip, self.learning_rate = float(clip), float(learning_rate)
        self.parameters = parameters
        self.params: list[Tensor] = []
        self.start_round(0)

    def bind(self, model: torch.nn.Module, adapter_params: list[Tensor]) -> None:
        """Choose the perturbed parameters of ``model`` (the order fixes the seeds).

        Args:
            model: The model the forward passes run.
            adapter_params: What ``"lora"`` perturbs: the LoRA factors and any trained head
                (peft's ``modules_to_save`` copy of a classification head).
        """
        self.model = model
        full = self.parameters == "full"
        self.params = _forward_parameters(model) if full else list(adapter_params)

    def start_round(self, round_seed: int) -> None:
        self.seeds = [direction_seed(round_seed, s) for s in range(self.num_perturbations)]
        self.client: int | None = None
        self.uploads: list[Upload] = []
        self._sums = torch.zeros(self.num_perturbations, dtype=torch.float64)
        self._count = 0
        self.skipped = 0

    @torch.inference_mode()
    def step(self, client_id: int, loss_fn: Callable[[], Tensor]) -> Tensor:
        """One minibatch of ``client_id``: ``S`` scalars accumulated; returns the mean loss.

        Args:
            client_id: The client whose minibatch this is (a new id finishes the previous client).
            loss_fn: Computes the minibatch loss with the model as it is (a scalar tensor).
        """
        if client_id != self.client:
            self._finish_client()
            self.client = client_id
        was_training = self.model.training
        self.model.eval()  # the two passes of a direction must see the same network (no dropout)
        losses = []
        for seed in self.seeds:
            plus, minus = (self._loss(loss_fn, seed, sign * self.mu) for sign in (1.0, -1.0))
            losses += [plus, minus]
            if not (math.isfinite(plus) and math.isfinite(minus)):
                self.skipped += 1
                self.model.train(was_training)
                return torch.tensor(float("nan"))
        self.model.train(was_training)
        scalars = [projected_gradient(torch.tensor(p), torch.tensor(m), self.mu) for p, m in
                   zip(losses[::2], losses[1::2], strict=True)]  # fmt: skip
        self._sums += torch.stack(scalars)
        self._count += 1
        return torch.tensor(sum(losses) / len(losses))

    def finish_round(self) -> list[Upload]:
        """This rank's uploads: one ``[S]`` float16-valued scalar vector per client."""
        self._finish_client()
        self.client = None
        return self.uploads

    def template(self, device: torch.device) -> dict[str, Tensor]:
        return {SCALAR_KEY: torch.zeros(self.num_perturbations, device=device)}

    @torch.no_grad()
    def apply_(self, aggregate: dict[str, Tensor]) -> bool:
        """``theta <- theta - lr / S * sum_s g_s z_s``; a non-finite ``g`` changes nothing, and
        neither does an empty aggregate (a skipped round)."""
        if SCALAR_KEY not in aggregate:
            return True
        scalars = aggregate[SCALAR_KEY].double().cpu()
        if not bool(torch.isfinite(scalars).all()):
            return False
        for seed, g in zip(self.seeds, scalars.tolist(), strict=True):
            add_direction_(self.params, seed, -self.learning_rate * g / self.num_perturbations)
        return True

    def _loss(self, loss_fn: Callable[[], Tensor], seed: int, scale: float) -> float:
        with perturbed(self.model, self.params, seed, scale):
            return float(loss_fn())

    def _finish_client(self) -> None:
        if self.client is None or self._count == 0:
            self._sums.zero_()
            self._count = 0
            return
        mean = clip_scalars(self._sums / self._count, self.clip)
        sent = mean.to(torch.float16).to(torch.float32)  # what 16 bits carry
        device = self.params[0].device if self.params else torch.device("cpu")
        self.uploads.append(
            Upload(
                client_id=self.client,
                tensors={SCALAR_KEY: sent.to(device)},
                ranks={},
                weight=1.0,
                meta={"bits": float(ANALOG_BITS * self.num_perturbations)},
            )
        )
        self._sums.zero_()
        self._count = 0


def _forward_parameters(model: torch.nn.Module) -> list[Tensor]:
    """Every parameter a forward pass uses: peft keeps the original of a ``modules_to_save``
    head beside the trained copy, and the original never runs, so it is left out."""
    return [p for name, p in model.named_parameters() if ".original_module." not in name]


def _check_positive(name: str, value: object) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and value > 0):
        raise ValueError(f"`{name}` ({value!r}) must be a finite number > 0.")
