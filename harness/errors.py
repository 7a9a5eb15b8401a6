"""Errors a user can act on, as opposed to bugs.

The CLI prints a `BenchError` as one line and exits with code 2; everything else is a bug
and keeps its traceback.
"""


class BenchError(Exception):
    """A mistake in the user's input (suite file, options, paths): shown as one line, exit 2."""


class SuiteError(BenchError):
    """A suite file that cannot be used; the message names the file and the key path."""


class PluginError(BenchError):
    """Plugins that cannot be loaded together, e.g. two components with the same name."""


class Unsupported(Exception):
    """A cell that cannot be built (e.g. a backbone a task cannot wrap): recorded as `skipped`."""


class Diverged(Exception):
    """Training produced a non-finite loss: the cell is recorded as `diverged`."""


class Terminated(KeyboardInterrupt):
    """SIGTERM during `bench run`: stopped as Ctrl-C stops it (finished cells kept, claims released), exit 143."""
