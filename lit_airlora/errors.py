"""``ConfigError``: bad input found at any stage before training, reported in one line by the CLI.

A ``ValueError`` subclass, so code catching ``ValueError`` keeps working. Raise it (not a plain
``ValueError``) from ``setup``-time checks on files, data and trainer flags: the CLI prints it
without a traceback even when ``trainer.fit`` is already running.
"""


class ConfigError(ValueError):
    """A configuration problem: the message names the argument, its value and the fix."""
