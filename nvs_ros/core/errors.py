"""Errors a user can act on: input, poses or settings the method cannot use.

Every error nvs_ros raises for a mistake the user can correct derives from `NvsError`, and its
message is one line that names the bad value and, where it can, what to do instead. The CLI
reports an NvsError as that line and a documented exit code; anything else is a bug and keeps
its traceback. The concrete classes also derive from the builtin a caller would expect
(ValueError, RuntimeError), so code that caught those still does.
"""


class NvsError(Exception):
    """Base class of the errors a user can act on (io's NvsIOError is one too)."""


class InputError(NvsError, ValueError):
    """Images, poses or settings the method cannot use (too few images, a poses file that places
    too few of them, ground truth that fixes no scale)."""


class NotReadyError(NvsError, RuntimeError):
    """A request the scene cannot answer yet (a render before the first round is trained)."""
