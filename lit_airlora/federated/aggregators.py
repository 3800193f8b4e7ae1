"""Pluggable aggregators (chosen in YAML by ``class_path``).

An aggregator decides which LoRA tensors clients train (``trained``) and send (``trainable``),
what a client starts from and sends (``client_start``, ``client_upload``: the client side of an
aggregation rule), and how the server combines uploads: ``partial_sums`` over one rank's uploads,
a sum over ranks (``reduce``), then ``finalize``. Over-the-air aggregation needs ``is_linear``.
Aggregators: FedIT and FFA-LoRA here, HeteroFL-style and HetLoRA in
:mod:`lit_airlora.federated.heterogeneous`, FedSA-LoRA in :mod:`lit_airlora.federated.fedsa`,
FLoRA (stacking) in :mod:`lit_airlora.federated.flora`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from lit_airlora.federated.aggregation import safe_divide, weighted_sum
from lit_airlora.federated.upload import Reduce, Upload
from lit_airlora.init_args import RecordsInitArgs

WEIGHT_KEY = "__weight__"


def identity_reduce(sums: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The reduce of a single process."""
    return dict(sums)


class Aggregator(RecordsInitArgs, ABC):
    """Base of the server aggregation rules (abstract: subclasses define the sums).

    ``partial_sums`` over one rank's uploads, a sum over ranks (``reduce``), then ``finalize``.
    """

    #: The aggregate is a linear function of the uploads (it can be computed over the air).
    is_linear: bool = True

    #: Keeps per-client state in this process (refused under DDP, where clients move ranks).
    has_client_state: bool = False

    #: The aggregate holds weight deltas the module merges into the frozen base weights, then
    #: the adapter restarts from a fresh init (FLoRA, :mod:`lit_airlora.federated.flora`).
    merges_into_base: bool = False

    def trainable(self, name: str) -> bool:
        """Whether clients send the LoRA tensor ``name`` (``"<module>.lora_A"``)."""
        return True

    def trained(self, name: str) -> bool:
        """Whether clients train ``name`` (default: the tensors they send)."""
        return self.trainable(name)

    def client_start(self, client_id: int, global_adapter: dict[str, Tensor]) -> dict[str, Tensor]:
        """The adapter client ``client_id`` starts its round from (default: the global one)."""
        return global_adapter

    def client_rank_cap(self, client_id: int, cap: int | None) -> int | None:
        """The client's rank cap this round (``None``: the global ranks) after ``cap`` (config)."""
        return cap

    def client_upload(
        self, upload: Upload, local: Mapping[str, Tensor], global_adapter: Mapping[str, Tensor]
    ) -> Upload:
        """What the client sends, from its update ``upload`` and its trained adapter ``local``."""
        return upload

    def broadcast_values(self, template: Mapping[str, Tensor]) -> int:
        """Values every client of the round downloads whatever the number of uploads (the
        ledger's ``comm/adapter_download_bits``): the new global tensors clients send."""
        return sum(t.numel() for n, t in template.items() if self.trainable(n))

    def stacked_values(self, upload: Upload, template: Mapping[str, Tensor]) -> int:
        """Values ``upload`` adds to every client's download (0: the reply has a fixed size)."""
        return 0

    def state_dict(self) -> dict:
        """Per-client state (tensors and builtins) for checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (stateless aggregators have nothing to restore)."""
        return None

    @abstractmethod
    def partial_sums(
        self, uploads: Sequence[Upload], template: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """This rank's share of the aggregate, as named tensors to sum over ranks."""

    @abstractmethod
    def finalize(self, sums: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The aggregate update from the all-reduced sums."""

    def aggregate(
        self,
        uploads: Sequence[Upload],
        template: Mapping[str, Tensor],
        reduce: Reduce = identity_reduce,
    ) -> dict[str, Tensor]:
        """Partial sums (float64), reduce over ranks, finalize; in the template's dtypes."""
        aggregate = self.finalize(reduce(self.partial_sums(uploads, template)))
        return {n: t.to(template[n].dtype) for n, t in aggregate.items()}


class FedIT(Aggregator):
    """FedAvg of A and B separately (FedIT; Zhang et al., ICASSP 2024), the default.

    The server update is the data-size weighted mean of the clients' updates of each factor.
    Entries a client did not send (sparsified or beyond its rank) count as zero.
    """

    def partial_sums(
        self, uploads: Sequence[Upload], template: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """This rank's share: ``sum_k w_k x_k`` per sent tensor and the weight ``sum_k w_k``."""
        names = [n for n in template if self.trainable(n)]
        if not uploads:
            sums = {n: torch.zeros_like(template[n], dtype=torch.float64) for n in names}
        else:
            weights = [u.weight for u in uploads]
            sums = weighted_sum([u.tensors for u in uploads], weights, names)
        total = float(sum(u.weight for u in uploads))
        device = next(iter(template.values())).device
        sums[WEIGHT_KEY] = torch.tensor(total, dtype=torch.float64, device=device)
        return sums

    def finalize(self, sums: Mapping[str, Tensor]) -> dict[str, Tensor]:
        total = sums[WEIGHT_KEY]
        return {n: safe_divide(t, total.expand_as(t)) for n, t in sums.items() if n != WEIGHT_KEY}


class FFALoRA(FedIT):
    """FFA-LoRA (Sun et al., ICLR 2024): A stays frozen at its random init; only B is trained
    and sent, so the average of B is the exact average of the clients' ``B A``. Dense tensors
    (a classification head) are trained and sent as with FedIT."""

    def trainable(self, name: str) -> bool:
        return not name.endswith("lora_A")
