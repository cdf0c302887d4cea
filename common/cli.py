"""The one way to run a script: :func:`run_script` parses the arguments and
calls ``main(args)``; expected failures (:class:`common.errors.UserError`)
become one line on stderr and exit code 2, Ctrl-C exits with 130, anything
else is a real bug and keeps its traceback. Imports nothing heavy."""
from __future__ import annotations

import os
import sys

from .errors import UserError


def output_problem(output: str, source: str, force: bool) -> str | None:
    """Why a script may not write ``output`` (it is its input ``source``, or
    it exists and ``force`` is off), or None. Outputs never overwrite inputs."""
    if os.path.abspath(output) == os.path.abspath(source):
        return f"{output}: the output would overwrite the input"
    if os.path.exists(output) and not force:
        return f"{output} exists (use --force to replace it)"
    return None


def run_script(main, parser) -> None:
    """Parse arguments, call ``main(args)`` and exit: with ``main``'s return
    code when it is an int (anything else counts as success, 0); with 2 and
    one line ``error: <message>`` on stderr for a :class:`UserError`; with 130
    on Ctrl-C."""
    args = parser.parse_args()
    try:
        code = main(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
