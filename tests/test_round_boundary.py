"""The round boundary and the round plan under Lightning's Trainer flags (tiny model)."""

from lit_airlora.federated.stages import StageCallback
from tests.helpers import tiny_fit


class PlanProbe(StageCallback):
    """Records the plan seen at round start and the context's plan at transmit."""

    def __init__(self):
        self.at_start, self.at_transmit = [], []

    def on_round_start(self, trainer, pl_module, round_idx):
        self.at_start.append((round_idx, pl_module.round_plan))

    def on_upload_transmit(self, trainer, pl_module, ctx):
        self.at_transmit.append(ctx.plan)


def test_plan_is_published_before_round_start(tmp_path, tiny_llama_dir, tokenizer):
    probe = PlanProbe()
    trainer, _ = tiny_fit(tmp_path, tiny_llama_dir, tokenizer, max_epochs=2, callbacks=[probe])
    schedule = trainer.datamodule.schedule
    assert [(r, p.round_idx) for r, p in probe.at_start] == [(0, 0), (1, 1)]
    assert [p.clients for _, p in probe.at_start] == [tuple(schedule.clients(r)) for r in (0, 1)]
    assert probe.at_transmit == [p for _, p in probe.at_start]
    assert probe.at_start[0][1].steps_this_rank == 3 * 2  # 3 clients x 2 local steps
