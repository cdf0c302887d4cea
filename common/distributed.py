"""Data-parallel training under ``torchrun`` (DistributedDataParallel).

torchrun starts one process per device and tells each its place through the
environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). Without those variables, a plain ``python train.py``, every
function here is a no-op and training is one process, as it always was.

What the training loop (:mod:`common.training`) gets from here:

- :func:`setup`: the process group, NCCL on GPUs and gloo on CPUs; ranks
  other than 0 print nothing (their stderr goes to ``os.devnull`` until
  :func:`shutdown`, which puts it back, so their errors still show).
- :func:`train_sampler`: each rank takes every ``world``-th index of the
  permutation a single process draws for the epoch, so one step's
  ``world`` per-rank batches are together the single process's batch of
  ``world x batch`` faces. Augmentation depends only on (seed, epoch, face
  index) (:class:`~common.dataset.LandmarkDataset`): each rank augments
  different faces, and a face looks the same whatever the number of processes.
- :func:`wrap`: DistributedDataParallel, optionally with batch-norm statistics
  over the global batch (``--sync-bn``).
- :func:`shard` and :func:`gather_shards`: validation split across ranks and
  put back in the single-process order, so the NME is the single-process one.
- :func:`broadcast_object`, :func:`broadcast_buffers`: rank 0's run folder,
  "best" decision and batch-norm statistics for everybody.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from .errors import InputError

_state = {"owned": False, "stderr": None}


@dataclass(frozen=True)
class LaunchEnv:
    """Where torchrun put this process: ``world_size`` processes in all,
    this one is ``rank`` (0-based, over all machines) and ``local_rank`` on
    its machine."""
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0


def launch_env() -> LaunchEnv:
    """The launcher's variables; ``world_size`` 1 when there are none (a plain
    ``python train.py``). Raises :class:`InputError` for malformed values."""
    env = {k: os.environ.get(k) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    if env["WORLD_SIZE"] in (None, "", "1"):
        return LaunchEnv()
    try:
        out = LaunchEnv(int(env["WORLD_SIZE"]), int(env["RANK"] or -1), int(env["LOCAL_RANK"] or -1))
    except ValueError:
        raise InputError(f"torchrun's variables are malformed: {env}") from None
    if not 0 <= out.rank < out.world_size or out.local_rank < 0:
        raise InputError(f"torchrun's variables do not fit together: {env} (start the script with "
                         "torchrun, which sets them)")
    return out


def is_active() -> bool:
    """Whether this process is one of several training one model."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes the run folder, logs and checkpoints."""
    return rank() == 0


def setup(device: torch.device) -> bool:
    """Join torchrun's process group when launched by it (NCCL for a GPU
    device, gloo for the CPU); returns whether this is a multi-process run.
    Ranks other than 0 are silenced until :func:`shutdown`."""
    env = launch_env()
    if env.world_size == 1:
        return False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        _state["owned"] = True
    if not is_main() and _state["stderr"] is None:
        _state["stderr"] = sys.stderr
        sys.stderr = open(os.devnull, "w")
    return True


def shutdown() -> None:
    """Undo :func:`setup`: give stderr back (so a rank's error line shows)
    and leave the process group if :func:`setup` created it."""
    if _state["stderr"] is not None:
        sys.stderr.close()
        sys.stderr, _state["stderr"] = _state["stderr"], None
    if _state["owned"] and dist.is_initialized():
        dist.destroy_process_group()
    _state["owned"] = False


def backend() -> str:
    return dist.get_backend() if is_active() else "none"


def resumed_batch_size(config: dict, world: int) -> int:
    """Per-process batch for a run resumed on ``world`` processes: the global
    batch (the run's ``batch_size`` x its ``world_size``, 1 for runs saved
    before data-parallel training) is kept, so the learning rate and the
    samples of each step stay what they were."""
    saved_world = int(config.get("world_size", 1))
    global_batch = int(config["batch_size"]) * saved_world
    if global_batch % world:
        raise InputError(f"the run's global batch of {global_batch} faces ({config['batch_size']} x "
                         f"{saved_world} processes) does not divide among {world} processes; resume it "
                         f"on a number of processes that divides {global_batch}")
    return global_batch // world


def single_process_order(n: int, seed: int) -> list[int]:
    """The order in which a single process's ``DataLoader(shuffle=True,
    generator=torch.Generator().manual_seed(seed))`` visits ``n`` samples,
    taken from such a loader itself: it draws its workers' base seed from the
    generator before the permutation, so a bare ``randperm`` would differ."""
    if n == 0:
        return []
    loader = torch.utils.data.DataLoader(range(n), batch_size=n, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    return next(iter(loader)).tolist()


class ShardSampler(torch.utils.data.DistributedSampler):
    """DistributedSampler (call ``set_epoch``) whose epoch permutation, from
    ``seed + epoch``, is the single process's (:func:`single_process_order`);
    rank ``r`` takes its positions ``r, r + world, ...``, the last
    ``n % world`` dropped so that every rank makes the same number of steps."""

    def __init__(self, dataset, seed: int, num_replicas: int | None = None, rank: int | None = None):
        if rank is None:
            rank = dist.get_rank() if is_active() else 0
        super().__init__(dataset, num_replicas=num_replicas or world_size(), rank=rank, shuffle=True,
                         seed=seed, drop_last=True)

    def __iter__(self):
        order = single_process_order(len(self.dataset), self.seed + self.epoch)
        return iter(order[self.rank:self.total_size:self.num_replicas])


def train_sampler(dataset, seed: int, epoch: int) -> ShardSampler | None:
    """This rank's :class:`ShardSampler` for epoch ``epoch``; None when
    single-process (the loader then shuffles with ``seed + epoch`` itself)."""
    if not is_active():
        return None
    sampler = ShardSampler(dataset, seed)
    sampler.set_epoch(epoch)
    return sampler


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum over ranks of the gradients:
    each rank's loss then reaches every rank's inputs through the shared
    statistics, as in one process."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics (and running averages) cover the
    global batch: the one computed by a single process on ``world x batch``
    faces. PyTorch's SyncBatchNorm does this on GPUs only; this one runs on
    any device (two all-reduces per layer and step: mean, then variance)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_active()):
            return super().forward(x)
        xf = x.float()
        c = xf.shape[1]
        count = torch.full((1,), xf.numel() / c, dtype=xf.dtype, device=xf.device)
        s = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), count]))
        n = s[c].detach()
        mean = s[:c] / n
        xc = xf - mean.view(1, c, 1, 1)
        var = _AllReduceSum.apply((xc * xc).sum((0, 2, 3))) / n
        y = xc * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / max(float(n) - 1, 1.0), m)
        return y.to(x.dtype)


def _global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d inside ``module`` by a :class:`GlobalBatchNorm2d`
    sharing its parameters and buffers (state_dict keys unchanged)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var = child.running_mean, child.running_var
            new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
        else:
            _global_batchnorm(child)
    return module


def wrap(model: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """``model`` in DistributedDataParallel (``model`` itself when
    single-process). ``sync_bn``: batch-norm statistics over the global batch
    (PyTorch's SyncBatchNorm on GPUs, :class:`GlobalBatchNorm2d` elsewhere);
    without it each rank normalises with its own batch's statistics and
    DDP copies rank 0's running averages to the others at every step.
    The BatchNorm layers of ``model`` are replaced in place."""
    if not is_active():
        return model
    if sync_bn:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = _global_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def broadcast_object(obj):
    """Rank 0's ``obj`` (picklable) on every rank."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank:
    without ``--sync-bn`` each rank's drift from its own last batch."""
    if is_active():
        for b in model.buffers():
            dist.broadcast(b, src=0)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over ranks (``t`` itself when single-process)."""
    if is_active():
        t = t.clone()
        dist.all_reduce(t)
    return t


def shard(dataset):
    """This rank's validation share: faces ``rank, rank + world, ...``."""
    if not is_active():
        return dataset
    return torch.utils.data.Subset(dataset, range(rank(), len(dataset), world_size()))


def gather_shards(values: np.ndarray) -> np.ndarray:
    """Per-face values of every rank's :func:`shard`, put back in the
    dataset's order (the same array on every rank)."""
    if not is_active():
        return values
    parts = [None] * world_size()
    dist.all_gather_object(parts, np.asarray(values))
    out = np.empty((sum(len(p) for p in parts),) + parts[0].shape[1:], dtype=parts[0].dtype)
    for r, p in enumerate(parts):
        out[r::len(parts)] = p
    return out
