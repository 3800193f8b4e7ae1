"""``lit-airlora``: the command line (``fit``, ``validate``, ``test``, ``predict``).

``main`` checks the configs with PyYAML alone (``preflight``) before importing torch or Lightning,
so most bad values are reported in a second; the LightningCLI in ``app`` then parses, builds and
runs. Any configuration error, found at either step or in a ``setup`` hook before the run starts,
ends with one line on stderr and exit code 2; an error once the run has started keeps its
traceback.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterator

from lit_airlora.cli.preflight import preflight
from lit_airlora.errors import ConfigError

DEBUG_ENV = "LIT_AIRLORA_DEBUG"
_LAZY = {"AirLoRACLI", "TRAINER_DEFAULTS", "compose_config"}


def main(args: list[str] | None = None) -> None:
    """Run the CLI; a configuration error exits with code 2 after one line, not a traceback."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == ["report"]:  # not a Trainer subcommand: no LightningCLI for it
        from lit_airlora.report.command import main as report_main

        sys.exit(report_main(argv[1:]))
    with _startup_logs() as startup:
        try:
            preflight(argv)
            from lit_airlora.cli.app import run

            run(argv, on_run_start=startup.pass_through)
        except ConfigError as err:
            if os.environ.get(DEBUG_ENV):
                raise
            startup.discard()
            from lit_airlora.cli.messages import describe

            print(f"lit-airlora: error: {describe(err)}", file=sys.stderr)
            print(f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
            sys.exit(2)


class _StartupLogs(logging.handlers.MemoryHandler):
    """Holds log records until the run starts: a failed start prints the error line alone."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(capacity=100_000, flushLevel=logging.CRITICAL + 1, target=target)

    def pass_through(self) -> None:
        """Print what was held and pass every later record straight through."""
        self.flushLevel = logging.NOTSET
        self.flush()

    def discard(self) -> None:
        with self.lock:
            self.buffer.clear()


@contextlib.contextmanager
def _startup_logs() -> Iterator[_StartupLogs]:
    root = logging.getLogger()
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler = _StartupLogs(stream)
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield handler
    finally:
        handler.flush()
        root.removeHandler(handler)
        root.setLevel(previous_level)
        logging.captureWarnings(False)


def __getattr__(name: str):
    # The LightningCLI pieces import Lightning: load them only when asked for.
    if name in _LAZY:
        from lit_airlora.cli import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
