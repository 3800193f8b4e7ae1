"""A callback marking the moment a run starts: errors before it are configuration errors."""

from __future__ import annotations

from collections.abc import Callable

from lightning.pytorch import Callback
from typing_extensions import override


class RunStarted(Callback):
    """Sets ``started`` on the first run hook (after setup, model building and restore).

    Args:
        on_start: Called once when the run starts.
    """

    def __init__(self, on_start: Callable[[], None] | None = None) -> None:
        self.started = False
        self.on_start = on_start

    def _start(self, *_) -> None:
        if not self.started:
            self.started = True
            if self.on_start is not None:
                self.on_start()

    @override
    def on_fit_start(self, trainer, pl_module) -> None:
        self._start()

    on_validation_start = on_test_start = on_predict_start = on_fit_start
