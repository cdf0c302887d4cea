"""The face detectors' networks on ONNX Runtime: exported once, kept in a
cache folder, and their weights files checked on loading. Shared by
``common/mtcnn.py`` and ``common/blazeface.py``.

Only a first start pays for the export (weights/README.md, *Speed*); a cache
that cannot be read or written only costs that export at every start, and a
damaged cached file is replaced.
"""
from __future__ import annotations

import hashlib
import os

import torch
from torch import nn


def cache_dir() -> str:
    """Folder for the ONNX exports: ``$FACE_LANDMARKS_CACHE``, else
    ``$XDG_CACHE_HOME/face-landmarks``, else ``~/.cache/face-landmarks``."""
    if os.environ.get("FACE_LANDMARKS_CACHE"):
        return os.environ["FACE_LANDMARKS_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "face-landmarks")


def cache_path(net: nn.Module, name: str) -> str:
    """Where the export of ``net`` is kept: named by a hash of its weights and
    the torch version, so new weights or a new exporter never read an old file."""
    h = hashlib.sha256(f"{name} {torch.__version__}".encode())
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().float().numpy().tobytes())
    return os.path.join(cache_dir(), f"{name}-{h.hexdigest()[:16]}.onnx")


def _cached_export(path: str, export) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        pass
    model = export()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"  # written whole, then renamed: no reader sees half a file
        with open(tmp, "wb") as f:
            f.write(model)
        os.replace(tmp, path)
    except OSError:
        pass
    return model


def session_options(threads: int):
    """ONNX Runtime options of the detectors: ``threads`` threads that do not
    spin while waiting (which matters on a machine shared with other work)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def cached_session(net: nn.Module, name: str, export, opts):
    """An ONNX Runtime session of ``net`` from its cached export
    (``export()``: the ONNX bytes, called when the cache has none or a damaged
    one). Raises what ONNX Runtime or the exporter raise."""
    import onnxruntime as ort
    path = cache_path(net, name)
    try:
        return ort.InferenceSession(_cached_export(path, export), opts, providers=["CPUExecutionProvider"])
    except Exception:  # a damaged cached file: drop it, export afresh
        try:
            os.remove(path)
        except OSError:
            pass
        return ort.InferenceSession(_cached_export(path, export), opts, providers=["CPUExecutionProvider"])


def load_weights(path: str, fmt: str, what: str, error: type[Exception]) -> dict:
    """A weights file written by one of ``training/tools/import_*.py``: a dict
    whose ``format`` key is ``fmt``; ``error`` (with ``what`` in its message)
    when it is missing, unreadable or something else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise error(f"{what} weights not found: {path}") from None
    except Exception as exc:  # truncated, not a torch file, ...
        raise error(f"could not read {what} weights {path}: {type(exc).__name__}") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise error(f"{path} is not {'an' if what[0] in 'AEIMO' else 'a'} {what} weights file "
                    f"(no format {fmt!r})")
    return state
