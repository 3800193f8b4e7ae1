"""FedSA-LoRA: share A, keep B local (Guo et al., "Selective Aggregation for Low-Rank
Adaptation in Federated Learning", ICLR 2025)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from lit_airlora.federated.aggregators import FedIT
from lit_airlora.federated.upload import Upload


class FedSALoRA(FedIT):
    """FedSA-LoRA: clients train A and B; only A is sent and averaged (A learns what clients
    share, B what is client-specific). Each client keeps its own B across rounds and resumes
    from it; the server never receives B, so the global adapter's B stays at its
    initialisation and the server-side validation measures the shared A with that B only
    (FedSA-LoRA is evaluated per client in the paper; per-client evaluation is not modelled).
    The clients' B's are checkpointed with the aggregator. Linear: A runs over the air.
    """

    has_client_state = True

    def __init__(self) -> None:
        self.local_b: dict[int, dict[str, Tensor]] = {}

    def trainable(self, name: str) -> bool:
        return name.endswith("lora_A")

    def trained(self, name: str) -> bool:
        return True

    def client_start(self, client_id: int, global_adapter: dict[str, Tensor]) -> dict[str, Tensor]:
        own = self.local_b.get(client_id)
        if own is None:
            return global_adapter
        return {**global_adapter, **{n: t.to(global_adapter[n]) for n, t in own.items()}}

    def client_upload(
        self, upload: Upload, local: Mapping[str, Tensor], global_adapter: Mapping[str, Tensor]
    ) -> Upload:
        b_names = [n for n in local if n.endswith("lora_B")]
        self.local_b[upload.client_id] = {n: local[n].detach().cpu().clone() for n in b_names}
        return upload

    def state_dict(self) -> dict:
        return {"local_b": {int(k): dict(v) for k, v in self.local_b.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.local_b = {int(k): dict(v) for k, v in state["local_b"].items()}
