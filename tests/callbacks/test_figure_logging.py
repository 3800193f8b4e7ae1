"""Figures reach every logger that takes them; the others get one clear note."""

import warnings
from types import SimpleNamespace

import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from matplotlib.figure import Figure

from lit_airlora.callbacks import figure_logging
from lit_airlora.callbacks.figure_logging import log_figure


def test_tensorboard_takes_the_figure_and_csv_is_noted_once(tmp_path, monkeypatch):
    monkeypatch.setattr(figure_logging, "_NOTED", set())
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    calls = []
    monkeypatch.setattr(
        tensorboard.experiment, "add_figure", lambda tag, fig, **kw: calls.append(tag)
    )
    csv = CSVLogger(tmp_path, name="csv")
    trainer = SimpleNamespace(is_global_zero=True, loggers=[csv, tensorboard])
    with pytest.warns(UserWarning, match=r"CSVLogger stores no figures, so `a/fig`"):
        assert log_figure(trainer, "a/fig", Figure(), step=0)
    assert calls == ["a/fig"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # noted once only: a second note would raise here
        assert log_figure(trainer, "a/fig", Figure(), step=1)
    assert calls == ["a/fig", "a/fig"]
    assert not log_figure(SimpleNamespace(is_global_zero=True, loggers=[csv]), "b", Figure(), 0)
    assert not log_figure(
        SimpleNamespace(is_global_zero=False, loggers=[tensorboard]), "c", None, 0
    )
