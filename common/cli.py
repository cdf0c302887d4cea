"""Running a script's ``main(args)``: expected failures become one line on
stderr and exit code 2, Ctrl-C exits with 130, anything else is a real bug
and keeps its traceback."""
from __future__ import annotations

import sys


def user_errors() -> tuple[type, ...]:
    """Exception types that mean bad input, not a bug (imported lazily so that
    ``--help`` stays fast)."""
    from .checkpoint import CheckpointError
    from .datasets import DatasetFormatError
    from .detector import DetectorError
    from .device import DeviceError
    from .imageio import ImageReadError
    return CheckpointError, DatasetFormatError, DetectorError, DeviceError, ImageReadError


def run_script(main, parser, extra_errors: tuple[type, ...] = ()) -> None:
    """Parse arguments, call ``main(args)`` and exit with its return code;
    ``extra_errors``: the script's own user-facing exception types."""
    args = parser.parse_args()
    try:
        code = main(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if isinstance(exc, user_errors() + tuple(extra_errors)):
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        raise
    sys.exit(code or 0)
