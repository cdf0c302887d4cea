"""Running a script's ``main(args)``: expected failures become one line on
stderr and exit code 2, Ctrl-C exits with 130, anything else is a real bug
and keeps its traceback."""
from __future__ import annotations

import sys


def user_errors() -> tuple[type, ...]:
    """Exception types that mean bad input, not a bug (imported lazily so that
    ``--help`` stays fast)."""
    from .checkpoint import CheckpointError
    from .readers import DatasetFormatError
    from .detector import DetectorError
    from .device import DeviceError
    from .images import ImageReadError
    return CheckpointError, DatasetFormatError, DetectorError, DeviceError, ImageReadError


def output_problem(output: str, source: str, force: bool) -> str | None:
    """Why a script may not write ``output`` (it is its input ``source``, or
    it exists and ``force`` is off), or None. Outputs never overwrite inputs."""
    import os
    if os.path.abspath(output) == os.path.abspath(source):
        return f"{output}: the output would overwrite the input"
    if os.path.exists(output) and not force:
        return f"{output} exists (use --force to replace it)"
    return None


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


# The detectors common.detector.make_detector knows and the default, kept
# here (this module imports nothing heavy) so that --help stays instant.
DETECTORS = ("mtcnn", "haar", "yunet")
DEFAULT_DETECTOR = "mtcnn"
DEFAULT_MIN_FACE = 40


def add_detector_arguments(group) -> None:
    """``--detector``, ``--detector-model`` and ``--min-face``, the same in
    every script that detects faces."""
    group.add_argument("--detector", default=DEFAULT_DETECTOR, choices=DETECTORS,
                       help="face detector: mtcnn (default; weights/mtcnn.pt), OpenCV's frontal Haar "
                            "cascade, or YuNet (needs --detector-model); see weights/README.md")
    group.add_argument("--detector-model", default=None, metavar="FILE",
                       help="model file: YuNet's ONNX file (required), or other MTCNN weights")
    group.add_argument("--min-face", type=float, default=None, metavar="PX",
                       help=f"smallest face to look for, in image pixels (default: {DEFAULT_MIN_FACE}, "
                            "common/detector.py's MIN_FACE; 80, what dlib finds without upsampling, is "
                            "faster on large photos)")
