"""``lit-airlora report``: figures and a Markdown summary from the TensorBoard logs of runs."""

from lit_airlora.report.runs import Run, find_run_dirs, load_run

__all__ = ["Run", "find_run_dirs", "load_run"]
