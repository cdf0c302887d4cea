"""Self-describing checkpoints: save atomically, load safely, rebuild the model.

A checkpoint is a dict of plain values plus tensors, loadable with
``torch.load(path, weights_only=True)``:
``format``, ``version``, ``task`` ("face"/"eyes"), ``scheme`` (what the K
points are: :meth:`common.schemes.Scheme.to_dict`; absent in older files,
which are ibug68 or eyes12), ``landmark_indices``,
``head``, ``input_size``, ``normalisation`` (mean, std of the grayscale
input), ``crop`` (crop constants), ``config`` (training arguments),
``scores`` (validation metrics), ``epoch``, ``model`` (state_dict) and, in
training states only, ``optimizer``, ``scheduler``, ``history``.
"""
from __future__ import annotations

import os
import tempfile

import torch

from .errors import CheckpointError
from .model import LandmarkNet, build_model
from . import transforms

FORMAT = "face-landmark-checkpoint"
VERSION = 1


def atomic_save(obj: dict, path: str) -> None:
    """Write ``obj`` with ``torch.save`` to a temporary file in the same folder,
    fsync it, then rename over ``path``: a kill at any moment leaves either the
    old file or the new one, never a torn one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_orphans(folder: str) -> list[str]:
    """Remove the temporary files that a run killed during :func:`atomic_save`
    left in ``folder`` (``.tmp-*.pt``); returns their names. Only for a
    folder no other process is saving into."""
    import glob
    gone = []
    for f in glob.glob(os.path.join(glob.escape(folder), ".tmp-*.pt")):
        try:
            os.unlink(f)
            gone.append(f)
        except OSError:
            pass
    return gone


def clean_state_dict(state: dict) -> dict:
    """Strip ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes,
    and store every tensor in the standard (contiguous) layout, whatever the
    memory format it was trained in (``--channels-last``)."""
    out = {}
    for k, v in state.items():
        for p in ("module.", "_orig_mod."):
            while k.startswith(p):
                k = k[len(p):]
        out[k] = v.contiguous() if isinstance(v, torch.Tensor) else v
    return out


def describe(model: LandmarkNet, task: str, indices, mean: float, std: float,
             scheme: dict | None = None) -> dict:
    """The self-description shared by training states and released weights;
    ``scheme``: :meth:`common.schemes.Scheme.to_dict` of what the model predicts."""
    out = {
        "format": FORMAT, "version": VERSION, "task": task,
        "landmark_indices": [int(i) for i in indices], "head": model.head,
        "input_size": int(model.input_size),
        "normalisation": {"mean": float(mean), "std": float(std), "colour": "gray"},
        "crop": {"face_context": transforms.FACE_CONTEXT, "eye_centre_dy": transforms.EYE_CENTRE_DY,
                 "eye_context": transforms.EYE_CONTEXT,
                 "box": "tight box of the 68 landmarks (x0, y0, x1, y1)"},
    }
    if model.styles > 1:  # style heads for training (common/model.py); released weights drop them
        out["styles"] = int(model.styles)
    if scheme is not None:
        out["scheme"] = scheme
        if scheme.get("name") not in ("ibug68", "eyes12"):
            out["crop"] = {**scheme["crop"], "box": f"tight box of the {scheme['num_points']} landmarks "
                                                    "(x0, y0, x1, y1)"}
    return out


def _first_sentence(exc: Exception) -> str:
    """The first sentence of an exception's message, whole."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text.split(". ")[0].rstrip(".")


def load_checkpoint(path: str, task: str | None = None) -> dict:
    """Load and validate a checkpoint (``weights_only=True``, on the CPU).

    Raises :class:`CheckpointError` naming the file if it is missing,
    unreadable, not one of ours, or for another ``task``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (a file saved by torch.save starts "
                              "as a zip archive; this one does not)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for torn or foreign files
        raise CheckpointError(f"{path}: damaged or incomplete checkpoint ({_first_sentence(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a face landmark checkpoint of this toolkit")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')} is newer than "
                              f"this code understands ({VERSION})")
    if task is not None and ckpt.get("task") != task:
        raise CheckpointError(f"{path}: this checkpoint is for the '{ckpt.get('task')}' task, "
                              f"but the '{task}' task is needed here")
    return ckpt


def model_weights(ckpt: dict) -> dict:
    """The weights a checkpoint stands for: a training state's (``last.pt``)
    moving average of the weights when the run kept one (``--ema``: what it
    validated and would release), else its ``model``."""
    return ckpt.get("ema") or ckpt["model"]


def model_from_checkpoint(ckpt: dict) -> LandmarkNet:
    """Rebuild the network from a checkpoint's own description (float32, eval mode)."""
    try:
        model = build_model(len(ckpt["landmark_indices"]), ckpt["head"], ckpt["input_size"], ckpt.get("styles", 1))
        state = {k: v.float() if v.is_floating_point() else v
                 for k, v in clean_state_dict(model_weights(ckpt)).items()}
        model.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint does not match its description: "
                              f"{str(exc).splitlines()[0][:160]}") from None
    return model.eval()


def load_model(path: str, task: str | None = None) -> tuple[LandmarkNet, dict]:
    """:func:`load_checkpoint` then :func:`model_from_checkpoint`."""
    ckpt = load_checkpoint(path, task)
    try:
        return model_from_checkpoint(ckpt), ckpt
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def release_copy(ckpt: dict, half: bool = True) -> dict:
    """A compact copy for shipping: description, scores and weights only,
    floating tensors stored as float16 (loaded back as float32). Training's
    extra style heads are left out: the model predicts style 0."""
    keep = ("format", "version", "task", "scheme", "landmark_indices", "head", "input_size",
            "normalisation", "crop", "config", "scores", "epoch", "mirror_offset", "averaged_from")
    out = {k: ckpt[k] for k in keep if k in ckpt}
    out["model"] = {k: (v.half() if half and v.is_floating_point() else v).clone()
                    for k, v in clean_state_dict(model_weights(ckpt)).items() if not k.startswith("style_heads.")}
    return out


def provenance(ckpt: dict) -> str:
    """Where the weights come from, for printing: "epoch 24", or
    "average of 2 runs (epochs 24, 24)" for an averaged checkpoint."""
    sources = ckpt.get("averaged_from")
    if sources:
        return f"average of {len(sources)} runs (epochs {', '.join(str(s.get('epoch')) for s in sources)})"
    return f"epoch {ckpt.get('epoch')}"


def average_checkpoints(ckpts: list[dict], names: list[str]) -> dict:
    """The weight average of several runs fine-tuned from the same start (a
    "model soup", Wortsman et al. 2022): floating tensors are averaged in
    float32, integer ones (BatchNorm's batch counters) kept from the first.
    The runs must describe the same model and name the same ``--init``;
    averaging networks trained from different starts gives nonsense. The
    result keeps the first checkpoint's description and lists its sources in
    ``averaged_from``; it has no validation scores of its own."""
    if len(ckpts) < 2:
        raise CheckpointError("averaging needs at least two checkpoints")
    first = ckpts[0]
    for ck, name in zip(ckpts[1:], names[1:]):
        for key in ("task", "scheme", "landmark_indices", "head", "input_size", "normalisation", "styles"):
            if ck.get(key) != first.get(key):
                raise CheckpointError(f"{name}: its {key} differs from {names[0]}'s; only runs of the same "
                                      f"model can be averaged")
    inits = [(ck.get("config") or {}).get("init") for ck in ckpts]
    if inits[0] is None or any(i != inits[0] for i in inits):
        raise CheckpointError("only runs started from the same checkpoint (the same --init) can be averaged; "
                              f"these started from {', '.join(str(i) for i in inits)}")
    states = [clean_state_dict(model_weights(ck)) for ck in ckpts]
    for state, name in zip(states[1:], names[1:]):
        if state.keys() != states[0].keys() or any(v.shape != states[0][k].shape for k, v in state.items()):
            raise CheckpointError(f"{name}: its tensors differ from {names[0]}'s")
    model = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            model[k] = sum(s[k].float() for s in states) / len(states)
        else:
            model[k] = v.clone()
    out = {k: v for k, v in first.items() if k not in ("model", "optimizer", "scheduler", "history", "scores",
                                                        "epoch", "ema", "mirror_offset")}
    out["averaged_from"] = [{"file": name, "epoch": ck.get("epoch"), "scores": ck.get("scores"),
                             "config": ck.get("config")} for ck, name in zip(ckpts, names)]
    out["model"] = model
    return out
