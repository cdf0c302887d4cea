"""Training loop shared by every ``training/<task>/<platform>/train.py`` script.

Thin scripts call ``parser = get_args_parser(); parser.set_defaults(...);
run_script(main, parser)`` (:func:`common.cli.run_script`).
"""
from __future__ import annotations

import argparse
import copy
import itertools
import math
import os
import random
import re
import socket
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from . import checkpoint as C
from . import distributed as D
from .dataset import LandmarkDataset, held_out_seen, is_final_fit, split_records
from .distill import Teacher
from .readers import dataset_name, read_datasets
from .device import autocast_dtype, describe_device, native_bf16, select_device
from .metrics import nme_per_face, summarize
from .model_options import add_device_argument
from .errors import CheckpointError, DatasetFormatError, InputError
from .landmarks import EYE_INDICES, FACE_INDICES
from .schemes import resolve_scheme, training_scheme
from .losses import COORD_LOSSES, landmark_loss
from .model import HEADS, build_model
from .progress import Progress
from .runlog import new_run_dir, plot_curves, write_log, write_time_summary
from .transforms import AugmentConfig

TASK_INDICES = {"face": FACE_INDICES, "eyes": EYE_INDICES}
_SESSIONS = itertools.count(1)  # training calls in this process
# Grayscale input normalisation (travels with the checkpoint).
MEAN, STD = 0.5, 0.25


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except for on/off switches, whose help
    says which way they go (--amp's default, None, means "the platform's")."""

    def _get_help_string(self, action):
        if action.nargs == 0 and (isinstance(action.default, bool) or action.default is None):
            return action.help
        return super()._get_help_string(action)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train a landmark model (68 face points, the 12 eye points 36-47, or any scheme the data "
                    "has) on dlib XML, 300-W .pts folders, keypoints CSV and WFLW files, mixed.",
        formatter_class=_HelpFormatter)
    p.add_argument("--data", nargs="+", metavar="PATH",
                   help="training data: dlib/imglab .xml, folder of .pts files, keypoints .csv or WFLW .txt "
                        "(several allowed, all with the same number of points)")
    p.add_argument("--val-data", nargs="+", metavar="PATH", default=None,
                   help="separate validation data; if absent, part of --data is held out by photo/clip")
    p.add_argument("--val-fraction", type=float, default=0.15,
                   help="share of photos/clips held out for validation (0: a final fit on every face, no "
                        "validation; best.pt is the last epoch)")
    p.add_argument("--val-from", nargs="+", metavar="DATASET", default=None,
                   help="hold out validation faces only from these datasets (paths or base names)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the photo/clip-level split")
    p.add_argument("--task", choices=sorted(TASK_INDICES), default="face",
                   help="face: all the data's points; eyes: the 12 eye points 36-47 (68-point data only)")
    p.add_argument("--scheme", default="auto", metavar="NAME",
                   help="what the data's points are: auto (68 points: ibug68, 98: wflw98, else a custom scheme "
                        "'custom<K>'), ibug68, wflw98, or the name to give a custom scheme (common/schemes.py)")
    p.add_argument("--flip-permutation", default=None, metavar="FILE",
                   help="custom schemes: the mirror partner of each point, as JSON or text, with the NME's two points "
                        "and drawing regions (an example: docs/custom_schemes.md); default: <data>.scheme.json beside the first data set, else inferred "
                        "by mirroring the mean shape (printed: check it)")
    p.add_argument("--crop-margin", type=float, default=None, metavar="M",
                   help="the crop's side is 1 + M times the longer side of the points' box (ibug68: 0.25); "
                        "default for a custom scheme: from the data's face boxes, else 0.25 (common/schemes.py's "
                        "measure_crop)")
    p.add_argument("--image-root", default=None, metavar="DIR",
                   help="WFLW .txt data: the folder its image paths are relative to (default: a WFLW_images "
                        "folder beside the file or above it)")
    p.add_argument("--head", choices=HEADS, default="pip",
                   help="pip: pixel-in-pixel grid head (best measured); regression: the seed's linear head")
    p.add_argument("--input-size", type=int, default=128, help="network input side in pixels (multiple of 16)")
    p.add_argument("--progressive-resize", nargs="+", default=None, metavar="SIZE:EPOCHS",
                   help="cheaper early epochs: train the first EPOCHS epochs with the batch downsampled to SIZE px "
                        "(a multiple of 16 below --input-size), each pair in turn, then the rest at --input-size, "
                        "e.g. 64:6 96:6; validation and checkpoints stay at --input-size (time and accuracy: "
                        "docs/ablations.md)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs to train (default 60; with --resume the run's own, or this to shorten/extend it)")
    p.add_argument("--batch-size", type=int, default=32, help="faces per optimisation step and process (under torchrun a step takes N x this)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (under torchrun not scaled with N: training/face/cuda/README.md)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--loss", choices=("auto",) + COORD_LOSSES, default="auto",
                   help="coordinate loss; auto = mse for regression (the seed), l1 for pip offsets")
    p.add_argument("--offset-radius", type=int, choices=(0, 1), default=0,
                   help="pip: train the x/y offsets of the cells within this distance of each point's cell "
                        "(0: that cell only, as in PIPNet; 1: also its 8 neighbours, whose guesses the decoding "
                        "averages)")
    p.add_argument("--schedule", choices=("cosine", "step", "none"), default="cosine")
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="validate and save an exponential moving average of the weights, updated every step "
                        "with this decay (e.g. 0.99; 0: off, the plain weights)")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after this many epochs without a better validation NME (0: never)")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="disable horizontal mirroring (on by default)")
    p.add_argument("--mirror-offset", type=float, nargs="+", default=None, metavar="PX",
                   help="per --data set (one value for all, or one each): how many photo pixels its annotation "
                        "places points right of the mirror-symmetric position; mirrored copies keep that offset "
                        "(measure it with training/tools/mirror_offset.py; default 0, a plain mirror)")
    p.add_argument("--data-fraction", type=float, nargs="+", default=None, metavar="F",
                   help="per --data set (one value for all, or one each): the share of its training faces that "
                        "each epoch draws, a new draw every epoch (1: all; e.g. 1 0.5 halves the second set's "
                        "faces per epoch, and the epoch's time with them; docs/ablations.md)")
    p.add_argument("--rotation", type=float, default=20.0, help="max random rotation in degrees")
    p.add_argument("--box-scale", type=float, default=0.10, help="random crop scale jitter (+-fraction)")
    p.add_argument("--box-shift", type=float, default=0.05, help="random crop shift jitter (+-fraction of side)")
    p.add_argument("--blur", type=float, default=0.0, metavar="P",
                   help="share of training crops blurred (Gaussian, sigma 0.3-1.5 input pixels)")
    p.add_argument("--jpeg", type=float, default=0.0, metavar="P",
                   help="share of training crops re-encoded as JPEG (quality 10-90)")
    p.add_argument("--occlusion", type=float, default=0.0, metavar="P",
                   help="share of training crops with a random gray rectangle over 4-20%% of them (the points "
                        "underneath are still trained)")
    p.add_argument("--tight", type=float, default=0.0, metavar="P",
                   help="share of training crops blacked out beyond the landmark box plus 0-25%% of its side "
                        "(photos already cut tight around the face)")
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="decode photos every epoch instead of caching face regions in memory")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed records instead of stopping")
    p.add_argument("--max-faces", type=int, default=0, help="use at most this many training faces (0: all)")
    p.add_argument("--init", metavar="CKPT", default=None,
                   help="initialise weights from a checkpoint (e.g. the face model for the eye model)")
    p.add_argument("--style-heads", action="store_true",
                   help="one pip head per --data set, each learning that set's annotation style from its faces "
                        "only, over a shared backbone; the model predicts the first set's style (common/model.py)")
    p.add_argument("--teacher", metavar="CKPT", default=None,
                   help="distillation: a trained model of the same points (e.g. weights/face192.pt) labels every "
                        "training crop at its own input size; the student learns --teacher-weight of its points "
                        "and the rest of the annotation's (common/distill.py). Refused, like --init, if it trained on "
                        "this run's held-out faces: weights/face192.pt is a final fit, so a run with a held-out "
                        "split takes its twin (training/model_files.sh, twin_dir)")
    p.add_argument("--teacher-weight", type=float, default=0.5, metavar="W",
                   help="with --teacher: the teacher's share of each target point (0: the annotation only, "
                        "1: the teacher only)")
    add_device_argument(p)   # the thin platform scripts set their own default
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: the platform's: on in the cuda and rocm scripts, off on a "
                        "CPU; a resumed run keeps its own unless this is given): float16 on a GPU; bfloat16 on "
                        "a CPU, where it pays only on CPUs with avx512_bf16 or AMX (weights/README.md has the "
                        "measured times) and is emulated, so slower, elsewhere. Validation stays float32 on a CPU")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False,
                   help="keep the network's weights and activations in channels-last memory layout: faster "
                        "epochs on some CPUs (docs/ablations.md, its channels-last row); the same computation, summed "
                        "in another order. Checkpoints are saved in the standard layout either way")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and augmentation")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: batch-norm statistics over the global batch (all processes) instead "
                        "of each process's own batch")
    p.add_argument("--runs-dir", default="runs", help="runs are written to <runs-dir>/<task>/<n>")
    p.add_argument("--resume", metavar="RUN", default=None,
                   help="continue an interrupted run: its folder or its last.pt; the run keeps its own settings "
                        "except the machine's, taken from this command: --device, --workers, --threads, "
                        "--channels-last (and --epochs and --amp, if given)")
    return p


def _per_data_set(option: str, data: list[str], values: list[float] | None) -> dict[str, float]:
    """An option that takes one value for all ``--data`` sets or one each, as data set name -> value."""
    if not values:
        return {}
    if len(values) not in (1, len(data)):
        raise InputError(f"{option} takes one value or one per --data set ({len(data)}), got {len(values)}")
    return {dataset_name(d): float(v) for d, v in zip(data, values * len(data) if len(values) == 1 else values)}


def _mirror_offsets(data: list[str], values: list[float] | None) -> dict[str, float]:
    """``--mirror-offset`` as data set name -> offset (one value applies to all sets)."""
    return _per_data_set("--mirror-offset", data, values)


def resize_plan(pairs: list[str] | None, input_size: int, epochs: int) -> list[int]:
    """``--progressive-resize`` as the training input size of each epoch
    (``epochs`` entries); ``None`` or empty: every epoch at ``input_size``."""
    sizes: list[int] = []
    for pair in pairs or []:
        m = re.fullmatch(r"(\d+):(\d+)", pair)
        if not m:
            raise InputError(f"--progressive-resize takes SIZE:EPOCHS pairs such as 96:12, got {pair!r}")
        size, n = int(m.group(1)), int(m.group(2))
        if size % 16 or not 16 <= size < input_size or n < 1:
            raise InputError(f"--progressive-resize {pair}: the size must be a multiple of 16 below --input-size "
                             f"({input_size}) and the epochs at least 1")
        sizes += [size] * n
    if pairs and len(sizes) >= epochs:
        raise InputError(f"--progressive-resize covers {len(sizes)} epochs of {epochs}: leave at least the last "
                         f"at --input-size {input_size}")
    return (sizes + [input_size] * epochs)[:epochs]


def _data_fractions(data: list[str], values: list[float] | None) -> dict[str, float]:
    """``--data-fraction`` as data set name -> share of its faces per epoch."""
    if values and not all(0.0 < v <= 1.0 for v in values):
        raise InputError(f"--data-fraction values are shares above 0 and at most 1, got {values}")
    return _per_data_set("--data-fraction", data, values)


def epoch_indices(records, fractions: dict[str, float], seed: int, epoch: int) -> list[int] | None:
    """The training faces epoch ``epoch`` draws under ``--data-fraction``
    (their indices, in order; a set's share drawn anew each epoch from
    ``seed`` and ``epoch``); None: every face."""
    if not fractions or all(f >= 1.0 for f in fractions.values()):
        return None
    by_set: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_set.setdefault(r.group.split("::", 1)[0], []).append(i)
    rng = np.random.default_rng([seed, epoch, 7919])
    keep = []
    for name in sorted(by_set):
        idx, f = by_set[name], fractions.get(name, 1.0)
        keep += idx if f >= 1.0 else rng.choice(idx, max(1, round(f * len(idx))), replace=False).tolist()
    return sorted(keep)


def _per_epoch(records, fractions: dict[str, float]) -> str:
    """`` (2701 an epoch: --data-fraction)`` when epochs draw a share, else ''."""
    drawn = epoch_indices(records, fractions, 0, 0)
    return "" if drawn is None else f" ({len(drawn)} an epoch: --data-fraction)"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lr_lambda(args):
    def f(epoch: int) -> float:
        if epoch < args.warmup_epochs:
            return (epoch + 1) / (args.warmup_epochs + 1)
        if args.schedule == "cosine":
            t = (epoch - args.warmup_epochs) / max(args.epochs - args.warmup_epochs, 1)
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))
        if args.schedule == "step":
            return 0.1 ** sum(epoch >= int(args.epochs * m) for m in (0.6, 0.85))
        return 1.0
    return f


def init_from_checkpoint(model, path: str, indices) -> int:
    """Copy matching weights from a checkpoint; a head trained on more iBUG
    points is sliced to ``indices`` (None: never sliced, for schemes whose
    points are not iBUG points). Returns the number of tensors copied."""
    src = C.load_checkpoint(path)
    if indices is None or (src.get("scheme") or {"ibug_points": True}).get("ibug_points") is None:
        indices = [-1]  # matches no source point: heads of another size are left as they are
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in C.clean_state_dict(C.model_weights(src)).items()}
    src_idx = list(src["landmark_indices"])
    pos = [src_idx.index(i) for i in indices] if all(i in src_idx for i in indices) else None
    own = model.state_dict()
    copied = 0
    for k, v in own.items():
        w = state.get(k)
        if w is None:
            continue
        if w.shape != v.shape and pos is not None and src.get("head") == model.head:
            k_src = len(src_idx)
            if k.startswith("score."):
                w = w[pos]
            elif k.startswith("offset."):
                w = torch.cat([w[pos], w[[k_src + p for p in pos]]])
            elif k.startswith("fc."):
                w = w.view(k_src, 2, *w.shape[1:])[pos].reshape(-1, *w.shape[1:])
        if w.shape == v.shape:
            own[k] = w
            copied += 1
    for i in range(len(getattr(model, "style_heads", ()))):  # a style head the source lacks: start from style 0's
        for part in ("weight", "bias"):
            k = f"style_heads.{i}.{part}"
            if k not in state:
                own[k] = torch.cat([own[f"score.{part}"], own[f"offset.{part}"]])
    model.load_state_dict(own)
    return copied


class WeightAverage:
    """Exponential moving average of a model's weights and batch-norm
    statistics (``--ema``): after every step ``avg += (1 - decay) * (w - avg)``.
    Its copy of the model is what is validated and saved as ``best.pt``."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise InputError(f"--ema must be between 0 and 1 (exclusive), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for avg, w in zip(self.model.state_dict().values(), model.state_dict().values()):
            if avg.is_floating_point():
                avg.lerp_(w, 1.0 - self.decay)
            else:
                avg.copy_(w)


@torch.inference_mode()
def validate(model, loader, device, loss_name: str, pair: tuple[int, int], amp: bool = False,
             offset_radius: int = 0) -> dict:
    """Validation loss and NME (in percent) over a loader of eval-pipeline samples.
    NME is the same in crop pixels as in image pixels (the crop is a similarity)."""
    model.eval()
    losses, nmes = [], []
    for x, pts, style in loader:
        x, pts = x.to(device, non_blocking=True), pts.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            style = _styles(model, style, device)
            out = model(x) if style is None else model(x, style)
        losses.append(float(landmark_loss(model, out, pts, loss_name, offset_radius)) * len(x))
        nmes.append(nme_per_face(model.decode(out).cpu().numpy(), pts.cpu().numpy(), pair))
    # Under torchrun each rank validated its shard (D.shard): the per-face
    # errors of all ranks, in the dataset's order, give the single-process NME.
    nmes = D.gather_shards(np.concatenate(nmes) if nmes else np.zeros(0))
    s = summarize(nmes)
    s["loss"] = float(D.all_reduce_sum(torch.tensor(sum(losses), dtype=torch.float64, device=device))) \
        / max(len(nmes), 1)
    return s


def _styles(net, style: torch.Tensor, device) -> torch.Tensor | None:
    """A batch's style indices on ``device`` for a model with style heads, else None."""
    return style.to(device, non_blocking=True) if getattr(net, "styles", 1) > 1 else None


def train_one_epoch(model, loader, optimizer, scaler, device, loss_name: str, epoch: int,
                    epochs: int, amp: bool, ema: WeightAverage | None = None,
                    offset_radius: int = 0, teacher: Teacher | None = None,
                    size: int | None = None) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean loss, images per second), over
    all processes under torchrun (``model`` may be DistributedDataParallel).
    With a ``teacher`` the loader's samples carry its crop third, and the
    targets are :meth:`~common.distill.Teacher.targets`. ``size`` below the
    model's input size (``--progressive-resize``): each batch is downsampled
    to it; the targets stay in input pixels, which the loss measures as
    shares of the side, so they hold at any size."""
    model.train()
    net, world = D.unwrap(model), D.world_size()
    small = size is not None and size != net.input_size
    bar = Progress(len(loader), desc=f"epoch {epoch + 1}/{epochs}" + (f" at {size}px" if small else ""))
    total = torch.zeros((), device=device)
    seen, t0, data_t, t_last = 0, time.time(), 0.0, time.time()
    running = None
    for step, (x, pts, style, *x_teacher) in enumerate(loader, start=1):
        data_t += time.time() - t_last
        x, pts = x.to(device, non_blocking=True), pts.to(device, non_blocking=True)
        if small:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        style = _styles(net, style, device)
        with torch.autocast(device.type, dtype=autocast_dtype(device), enabled=amp):
            if teacher is not None:  # its points are decoded in float32 whatever the precision
                taught = teacher.targets(pts, x_teacher[0].to(device, non_blocking=True))
                # the teacher predicts style 0: other styles keep their own annotation
                pts = taught if style is None else torch.where((style == 0).view(-1, 1, 1), taught, pts.float())
            out = model(x) if style is None else model(x, style)
        loss = landmark_loss(net, out, pts, loss_name, offset_radius)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update(net)
        seen += len(x)
        total += loss.detach() * len(x)
        if step % 10 == 0 or step == len(loader):
            lv = float(loss.detach())  # device sync only when logging
            running = lv if running is None else 0.8 * running + 0.2 * lv
            bar.update(step, seen * world, loss=running, data_ms=1000 * data_t / step)
        t_last = time.time()
    bar.close()
    elapsed = time.time() - t0
    total, seen = D.all_reduce_sum(torch.stack([total.double(), torch.tensor(seen, device=device).double()]))
    return float(total) / max(float(seen), 1), float(seen) / max(elapsed, 1e-9)


def _describe_plan(sizes: list[int]) -> str:
    """`` (epochs 1-6 at 64px, 7-12 at 96px)`` for a progressive plan, else ''."""
    runs, start = [], 0
    for i in range(1, len(sizes) + 1):
        if i == len(sizes) or sizes[i] != sizes[start]:
            runs.append((start + 1, i, sizes[start]))
            start = i
    early = [f"{a}-{b} at {s}px" if a != b else f"{a} at {s}px" for a, b, s in runs[:-1]]
    return f" (epochs {', '.join(early)})" if early else ""


def _resolve_resume(path: str) -> str:
    return os.path.join(path, "last.pt") if os.path.isdir(path) else path


def main(args: argparse.Namespace) -> dict:
    """Train; returns the best validation scores. Errors in inputs raise
    exceptions with clear messages (scripts turn them into one line).
    Under torchrun, one of several data-parallel processes
    (:mod:`common.distributed`); only rank 0 writes the run folder."""
    try:
        return _train(args)
    finally:
        D.shutdown()


def _train(args: argparse.Namespace) -> dict:
    state = None
    if not 0 <= args.val_fraction < 1:
        raise DatasetFormatError(f"--val-fraction must be at least 0 and below 1, got {args.val_fraction}")
    for name in ("blur", "jpeg", "occlusion", "tight"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise InputError(f"--{name} is a probability between 0 and 1, got {getattr(args, name)}")
    if not 0.0 <= args.teacher_weight <= 1.0:
        raise InputError(f"--teacher-weight must be between 0 and 1, got {args.teacher_weight}")
    if args.teacher and not os.path.isfile(args.teacher):
        raise InputError(f"--teacher {args.teacher}: no such file")
    if args.resume:
        last = _resolve_resume(args.resume)
        if not os.path.exists(last) and os.path.isdir(os.path.dirname(last) or "."):
            raise C.CheckpointError(f"{os.path.dirname(last) or '.'}: no epoch of this run finished, so there "
                                    "is nothing to resume; start the run again without --resume")
        state = C.load_checkpoint(last)
        if "optimizer" not in state:
            raise CheckpointError(f"{last}: a released model, not a training state (use --init)")
        # Machine settings come from the resuming command (a run may move to a CPU with bfloat16, or a GPU).
        keep = {k: getattr(args, k) for k in ("device", "workers", "threads", "channels_last", "resume")}
        if args.epochs:  # a resumed run may be extended or shortened; the schedule follows
            keep["epochs"] = args.epochs
        if args.amp is not None:  # given on this command; otherwise the run's own, not the platform's default
            keep["amp"] = args.amp
        keep["platform_amp"] = getattr(args, "platform_amp", False)  # for runs saved before --amp existed
        # Options added after the run was started take their defaults.
        defaults = vars(get_args_parser().parse_args([]))
        args = argparse.Namespace(**{**defaults, **state["config"], **keep})
        run_dir = os.path.dirname(os.path.abspath(last))
    if not args.data:
        raise InputError("--data is required (one or more datasets)")
    args.epochs = args.epochs or 60
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    D.setup(device)
    world = D.world_size()
    if state is not None and world != int(state["config"].get("world_size", 1)):
        args.batch_size = D.resumed_batch_size(state["config"], world)
        print(f"resuming on {world} process(es): batch {args.batch_size} per process keeps the run's "
              f"global batch of {args.batch_size * world}", file=sys.stderr)
    if args.amp is None:  # a fresh run (or a resumed one from before --amp existed): the platform's default
        args.amp = bool(getattr(args, "platform_amp", False))
    amp = bool(args.amp)
    if amp and device.type == "cpu" and not native_bf16():
        print("note: --amp on this CPU emulates bfloat16 (no avx512_bf16 or AMX): expect it to be slower "
              "than float32", file=sys.stderr)
    sizes = resize_plan(args.progressive_resize, args.input_size, args.epochs)
    _seed_everything(args.seed)
    loss_name = args.loss if args.loss != "auto" else ("mse" if args.head == "regression" else "l1")
    radius = args.offset_radius

    offsets = _mirror_offsets(args.data, args.mirror_offset)   # before the (slow) reading of the data
    fractions = _data_fractions(args.data, args.data_fraction)
    if args.style_heads and args.head != "pip":
        raise InputError("--style-heads needs the pip head")
    styles = {dataset_name(d): i for i, d in enumerate(args.data)} if args.style_heads else {}
    records = read_datasets(args.data, skip_bad=args.skip_bad, image_root=args.image_root)
    if args.val_data:
        train_recs, val_recs = records, read_datasets(args.val_data, skip_bad=args.skip_bad,
                                                      image_root=args.image_root)
    else:
        val_from = [dataset_name(v) for v in args.val_from] if args.val_from else None
        if val_from:
            known = {r.group.split("::", 1)[0] for r in records}
            missing = [v for v in val_from if v not in known]
            if missing:
                raise DatasetFormatError(f"--val-from {' '.join(missing)}: not among the --data sets "
                                         f"({', '.join(sorted(known))})")
        train_recs, val_recs = split_records(records, args.val_fraction, args.split_seed, val_from)
    if args.max_faces and len(train_recs) > args.max_faces:
        rng = np.random.default_rng(args.seed)
        train_recs = [train_recs[i] for i in sorted(rng.choice(len(train_recs), args.max_faces, replace=False))]
    # --val-fraction 0: a final fit on every face, validated on none (its twin run with a
    # held-out split gives the figures); best.pt is then the last epoch.
    final_fit = not val_recs and is_final_fit(vars(args))
    if not train_recs or not (val_recs or final_fit):
        raise DatasetFormatError(f"need training and validation faces, got {len(train_recs)} and "
                                 f"{len(val_recs)} (use --val-data or a larger --val-fraction)")
    data_scheme = resolve_scheme(train_recs + val_recs, args.data, args.scheme, args.flip_permutation,
                                 args.crop_margin)
    scheme = training_scheme(data_scheme, args.task)
    indices, pair = scheme.landmark_indices, scheme.norm
    aug = AugmentConfig(mirror=args.mirror, rotation=args.rotation, box_scale=args.box_scale,
                        box_shift=args.box_shift, blur=args.blur, jpeg=args.jpeg, occlusion=args.occlusion,
                        tight=args.tight)
    # A teacher or starting model that trained on this run's held-out faces (a final fit, or another split)
    # would make its validation figures flatter.
    for option, path in (("--teacher", args.teacher), ("--init", None if state else args.init)):
        if path and val_recs:
            seen = held_out_seen(val_recs, C.load_checkpoint(path).get("config") or {})
            if seen:
                raise InputError(f"{option} {path} trained on {seen} of this run's {len(val_recs)} held-out faces "
                                 "(a final fit, or another split): its validation figures would flatter; use a "
                                 "model trained with this run's split (a final fit's twin)")
    teacher = None
    if args.teacher:
        teacher = Teacher(args.teacher, indices, args.input_size, args.teacher_weight, device)
    t_cache = time.time()
    train_ds = LandmarkDataset(train_recs, scheme.crop, args.input_size, indices, True, aug, MEAN, STD,
                               seed=args.seed, cache=args.cache, name="train", mirror_offsets=offsets,
                               flip=data_scheme.flip, teacher_view=teacher.view if teacher else None,
                               styles=styles)
    val_ds = None if final_fit else LandmarkDataset(val_recs, scheme.crop, args.input_size, indices, False, aug,
                                                    MEAN, STD, cache=args.cache, name="validation", styles=styles)
    cache_s = time.time() - t_cache

    model = build_model(len(indices), args.head, args.input_size, max(len(args.data), 1) if args.style_heads
                        else 1).to(device)
    if args.channels_last:  # checkpoints are saved in the standard layout either way (C.clean_state_dict)
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(args))
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")  # bfloat16 needs none
    history, start_epoch, best_nme = [], 0, float("inf")
    ema = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history, start_epoch = list(state["history"]), int(state["epoch"])
        best_nme = min((h["val_nme"] for h in history), default=float("inf"))
        print(f"resuming {run_dir} at epoch {start_epoch + 1}/{args.epochs}", file=sys.stderr)
        if D.is_main():  # a kill during a checkpoint save leaves a temporary file behind
            for f in C.remove_orphans(run_dir):
                print(f"removed {f}, left by a run killed while saving", file=sys.stderr)
    else:
        if args.init:
            n = init_from_checkpoint(model, args.init, indices if scheme.ibug_points is not None else None)
            print(f"initialised {n} tensors from {args.init}", file=sys.stderr)
        run_dir = D.broadcast_object(new_run_dir(args.runs_dir, args.task) if D.is_main() else None)
    if args.ema:
        ema = WeightAverage(model, args.ema)
        if state is not None and state.get("ema"):
            ema.model.load_state_dict(state["ema"])
    scored = ema.model if ema is not None else model  # what is validated and saved as best.pt
    train_model = D.wrap(model, device, args.sync_bn)  # model itself when single-process
    precision = f"{str(autocast_dtype(device)).replace('torch.', '')} mixed" if amp else "float32"
    precision += ", channels-last" if args.channels_last else ""
    if ema is not None:
        precision += f"  weights: moving average (decay {args.ema:g})"
    if teacher is not None:
        precision += f"\nteacher: {args.teacher} ({teacher.size}px), {args.teacher_weight:g} of each target"
    print(f"run folder: {run_dir}\ndevice: {describe_device(device)}  task: {args.task}  head: {args.head}  "
          f"input: {args.input_size}px{_describe_plan(sizes)}  loss: {loss_name}  "
          f"precision: {precision}\ntrain faces: {len(train_recs)}{_per_epoch(train_recs, fractions)}  "
          f"validation faces: {len(val_recs)}  (cache built in {cache_s:.0f}s)", file=sys.stderr)
    if world > 1:
        print(f"processes: {world} ({D.backend()}{', batch-norm over all' if args.sync_bn else ''}); batch "
              f"{args.batch_size} per process = {args.batch_size * world} per step; --lr {args.lr:g} is used as "
              "given (not scaled with the number of processes)", file=sys.stderr)

    config = {k: v for k, v in vars(args).items() if k not in ("resume", "platform_amp")}
    config["world_size"] = world
    describe = C.describe(model, args.task, indices, MEAN, STD, scheme.to_dict())
    pin = device.type == "cuda"
    val_loader = None if final_fit else DataLoader(D.shard(val_ds), batch_size=max(args.batch_size, 32),
                                                   shuffle=False, num_workers=args.workers, pin_memory=pin)
    log_path, plot_path = os.path.join(run_dir, "log.csv"), os.path.join(run_dir, "curves.png")
    # This process is one session of the run: its machine and epochs go to time.txt.
    n = next(_SESSIONS)  # a process may train more than once (a notebook, the tests): each call is a session
    session = {"id": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f" pid {os.getpid()}"
               + (f" call {n}" if n > 1 else ""),
               "host": socket.gethostname(),
               "machine": describe_device(device) + (f" x {world} processes" if world > 1 else "")}
    sessions = list(state.get("sessions", [])) + [session] if state is not None else [session]
    stale = 0
    if history and not final_fit:
        best_epoch = min(history, key=lambda h: h["val_nme"])["epoch"]
        stale = history[-1]["epoch"] - best_epoch
    try:
        for epoch in range(start_epoch, args.epochs):
            t0 = time.time()
            train_ds.set_epoch(epoch)
            drawn = epoch_indices(train_recs, fractions, args.seed, epoch)  # --data-fraction; None: all
            epoch_ds = train_ds if drawn is None else torch.utils.data.Subset(train_ds, drawn)
            sampler = D.train_sampler(epoch_ds, args.seed * 100003, epoch)  # None: single-process
            g = torch.Generator().manual_seed(args.seed * 100003 + epoch) if sampler is None else None
            loader = DataLoader(epoch_ds, batch_size=args.batch_size, shuffle=sampler is None, generator=g,
                                sampler=sampler, num_workers=args.workers, pin_memory=pin,
                                drop_last=len(epoch_ds) > args.batch_size * world)
            lr = optimizer.param_groups[0]["lr"]
            train_loss, ips = train_one_epoch(train_model, loader, optimizer, scaler, device, loss_name,
                                              epoch, args.epochs, amp, ema, radius, teacher, sizes[epoch])
            scheduler.step()
            D.broadcast_buffers(scored)  # every rank validates what rank 0 saves
            val = (dict.fromkeys(("loss", "nme", "median", "fr8"), float("nan")) if final_fit else
                   validate(scored, val_loader, device, loss_name, pair, amp, radius))
            row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val["loss"],
                   "val_nme": val["nme"], "lr": lr, "epoch_s": time.time() - t0, "img_per_s": ips,
                   "input_px": sizes[epoch], "session": session["id"]}
            history.append(row)
            # rank 0 decides for all; a final fit keeps its last epoch
            improved = final_fit or D.broadcast_object(val["nme"] < best_nme)
            at = f" at {sizes[epoch]}px" if sizes[epoch] != args.input_size else ""
            scored_text = ("no validation (a final fit)" if final_fit else
                           f"val loss {val['loss']:.5f}  val NME {val['nme']:.2f}% (median {val['median']:.2f}, "
                           f"FR8 {val['fr8']:.1f}%){'  * best' if improved else ''}")
            print(f"epoch {epoch + 1}/{args.epochs}{at}: train loss {train_loss:.5f}  {scored_text}  "
                  f"{row['epoch_s']:.0f}s", file=sys.stderr, flush=True)
            scores = {"val_" + k: v for k, v in val.items()}
            scores["val_data"] = args.val_data or ([f"{args.val_fraction:.0%} of photos/clips of "
                                                    f"{', '.join(args.val_from or args.data)}"] if not final_fit
                                                   else ["none: a final fit on every face (--val-fraction 0)"])
            if improved:
                best_nme, stale = (best_nme if final_fit else val["nme"]), 0
            else:
                stale += 1
            if D.is_main():  # one writer: rank 0
                if improved:
                    C.atomic_save({**describe, "config": config, "scores": scores, "epoch": epoch + 1,
                                   "model": C.clean_state_dict(scored.state_dict())},
                                  os.path.join(run_dir, "best.pt"))
                C.atomic_save({**describe, "config": config, "scores": scores, "epoch": epoch + 1,
                               "model": C.clean_state_dict(model.state_dict()),
                               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "scaler": scaler.state_dict() if amp else {}, "history": history,
                               "ema": C.clean_state_dict(ema.model.state_dict()) if ema is not None else {},
                               "sessions": sessions},
                              os.path.join(run_dir, "last.pt"))
                write_log(log_path, history)
                write_time_summary(os.path.join(run_dir, "time.txt"), history, sessions)
                plot_curves(plot_path, history, f"{args.task} / {args.head} / {args.input_size}px")
            if args.patience and stale >= args.patience:
                print(f"early stop: no better validation NME for {stale} epochs", file=sys.stderr)
                break
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last finished epoch is saved. Continue with: --resume {run_dir}",
              file=sys.stderr)
        raise
    best = (history[-1] if final_fit else min(history, key=lambda h: h["val_nme"])) if history else {}
    kept = (f"the last epoch ({best.get('epoch')}) kept: a final fit, no validation" if final_fit else
            f"best validation NME {best.get('val_nme', float('nan')):.2f}% at epoch {best.get('epoch')}")
    print(f"done. {kept}; checkpoints, log.csv and curves.png in {run_dir}", file=sys.stderr)
    return {"run_dir": run_dir, "best": best, "history": history}

