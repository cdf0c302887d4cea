"""The one place for the defaults of the options that choose and run a
landmark model, for every script: ``--weights`` (the default-model rule,
:func:`default_weights`, or a named file of this repository's ``weights/``,
never a path relative to the current folder), ``--device`` (``auto``) and
the PyTorch back end's levers ``--bf16``, ``--channels-last`` and
``--compile`` (:class:`TorchLevers`). Imports nothing heavy, so that
``--help`` stays instant; the device is anything with a ``.type``
(``torch.device``).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from dataclasses import dataclass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS_DIR = os.path.join(REPO_ROOT, "weights")
# The most accurate shipped face model (192 px input; weights/README.md).
ACCURATE_FACE_WEIGHTS = "face192.pt"
DEFAULT_DEVICE = "auto"
DEVICE_HELP = ("auto (a GPU when present), cpu or cuda (ROCm GPUs are 'cuda' too); asking for an absent GPU "
               "is an error")


def shipped(name: str) -> str:
    """The absolute path of ``name`` in this repository's ``weights/``."""
    return os.path.join(WEIGHTS_DIR, name)


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def default_weights(task: str, device, pt_only: bool = False) -> tuple[str, str]:
    """The shipped model for ``task`` ("face" or "eyes") on ``device`` (a
    ``torch.device``), and why it was picked (for a log line). The one rule
    for every command:

    - on a GPU: ``weights/face192.pt`` (:data:`ACCURATE_FACE_WEIGHTS`, the
      most accurate, for more network time: little on a GPU) for the face task, ``weights/eyes.pt`` for the eye task;
    - on a CPU with onnxruntime installed: ``weights/<task>.int8.onnx``
      (faster than ``<task>.pt`` on a CPU at the same accuracy: weights/README.md);
    - on a CPU without onnxruntime, or with ``pt_only`` (the PyTorch
      back end's levers, :class:`TorchLevers`, are asked for): ``weights/<task>.pt``.

    A file missing from ``weights/`` falls back to ``weights/<task>.pt``.
    See weights/README.md for the figures.
    """
    pt = os.path.join(WEIGHTS_DIR, f"{task}.pt")
    if device.type != "cpu":
        if task == "face":
            accurate = os.path.join(WEIGHTS_DIR, ACCURATE_FACE_WEIGHTS)
            if not os.path.isfile(accurate):
                return pt, f"default on a GPU; {ACCURATE_FACE_WEIGHTS} is missing"
            return accurate, "default on a GPU"
        return pt, "default on a GPU"
    if pt_only:
        return pt, "default on a CPU for the PyTorch back end's levers"
    if not onnxruntime_available():
        return pt, "default on a CPU without onnxruntime"
    int8 = os.path.join(WEIGHTS_DIR, f"{task}.int8.onnx")
    if not os.path.isfile(int8):
        return pt, f"default on a CPU; {task}.int8.onnx is missing"
    return int8, "default on a CPU with onnxruntime"


def choice_line(path: str, reason: str, option: str = "--weights") -> str:
    """The log line of a default model: ``model: weights/face.int8.onnx
    (default on a CPU with onnxruntime; --weights to choose)``."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        rel = path
    return f"model: {rel if len(rel) < len(path) else path} ({reason}; {option} to choose)"


def pick_weights(path: str | None, task: str, device, option: str = "--weights", pt_only: bool = False) -> str:
    """``path`` when given, else :func:`default_weights`'s choice, logged on
    stderr with its reason (:func:`choice_line`)."""
    if path:
        return path
    path, reason = default_weights(task, device, pt_only)
    print(choice_line(path, reason, option), file=sys.stderr, flush=True)
    return path


def add_weights_argument(parser, what: str, option: str = "--weights", file: str | None = None,
                         nargs: str | None = None) -> None:
    """Add ``option`` (``--weights``) to ``parser`` (or an argument group).
    ``what``: the help's first words (what the file is). Its default: with
    ``file``, that file of this repository's ``weights/`` (:func:`shipped`;
    a list of it with ``nargs``); else None, which the script turns into the
    default-model rule's choice with :func:`pick_weights`."""
    if file is None:
        default, said = None, ("the shipped model for the task and device (the default-model rule, "
                               "common/model_options.py; the choice is printed)")
    else:
        default = shipped(file) if nargs is None else [shipped(file)]
        said = f"this repository's weights/{file}"
    parser.add_argument(option, default=default, nargs=nargs, metavar="FILE",
                        help=f"{what}; default: {said}")


def add_device_argument(parser) -> None:
    """Add ``--device`` (default :data:`DEFAULT_DEVICE`; the thin training
    scripts change it with ``parser.set_defaults``)."""
    parser.add_argument("--device", default=DEFAULT_DEVICE, help=DEVICE_HELP)


@dataclass(frozen=True)
class TorchLevers:
    """Settings of the PyTorch back end (:class:`common.landmark_model.TorchBackend`;
    ``.pt`` weights only): ``bf16`` runs the network under
    ``torch.autocast(bfloat16)`` (decoding stays float32); ``channels_last``
    stores the network and its input channels-last; ``compile``
    ``torch.compile``s the network and decoding. Their speed and accuracy:
    weights/README.md."""
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False

    @property
    def names(self) -> list[str]:
        """The options in force, as typed: ``["--bf16", "--compile"]``."""
        return [f"--{k.replace('_', '-')}" for k in ("bf16", "channels_last", "compile") if getattr(self, k)]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TorchLevers":
        """The levers of parsed arguments (:func:`add_lever_arguments`)."""
        return cls(bool(args.bf16), bool(args.channels_last), bool(args.compile))


def add_lever_arguments(parser) -> None:
    """Add ``--bf16``, ``--channels-last`` and ``--compile`` (:class:`TorchLevers`)."""
    parser.add_argument("--bf16", action="store_true",
                        help="PyTorch back end (.pt weights; the default models are then the .pt ones): run the "
                             "network in bfloat16 (torch.autocast); a CPU without avx512_bf16 or AMX emulates it, "
                             "slower than float32 (inference/benchmark.py measures these levers on your machine)")
    parser.add_argument("--channels-last", action="store_true",
                        help="PyTorch back end: channels-last memory format")
    parser.add_argument("--compile", action="store_true",
                        help="PyTorch back end: torch.compile the network and decoding (at load time; needs a C "
                             "compiler; a failure is an error)")
