"""The exception types that mean bad input, not a bug. Every one is a
:class:`UserError`: :func:`common.cli.run_script` turns it into one line
``error: <message>`` on stderr and exit code 2, and lets any other exception
keep its traceback. This module imports nothing, so that any module (and a
script's ``--help``) can use it at no cost."""


class UserError(Exception):
    """Base class: a failure the user can fix; the message says what and where."""


class CheckpointError(UserError):
    """The checkpoint is missing, corrupt, or not what the caller needs."""


class DatasetFormatError(UserError):
    """A record is malformed; the message names the file and line or element."""


class DetectorError(UserError):
    """The detector could not be created (missing model file, etc.)."""


class DeviceError(UserError):
    """The requested device is not available."""


class ImageReadError(UserError):
    """The file is missing, is not an image, or is damaged."""


class InputError(UserError, ValueError):
    """A bad argument or input (message: ``<what>: <reason>``); one input of
    predict.py that cannot be processed. A ValueError too, for callers that
    catch those."""


class OutputError(UserError, OSError):
    """An output could not be written (disk full, I/O error, ...): the
    message names the output and the system's reason, not the input being
    processed. ``path`` and ``reason`` hold the two."""

    def __init__(self, path: str, reason):
        if isinstance(reason, OSError):
            reason = reason.strerror or str(reason)
        super().__init__(f"{path}: cannot write ({reason})")
        self.path, self.reason = path, str(reason)

    def __str__(self) -> str:
        return self.args[0]
class CompileError(UserError):
    """``torch.compile`` could not compile the model here (no C compiler, an
    unsupported operation); the message says why."""
