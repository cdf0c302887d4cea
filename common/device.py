"""The one place where the compute device is chosen."""
from __future__ import annotations

import torch

from .distributed import launch_env
from .errors import DeviceError

DEVICES = ("auto", "cpu", "cuda")


def select_device(name: str = "auto") -> torch.device:
    """``cpu``, ``cuda`` (NVIDIA, or AMD through ROCm builds, which also call
    their GPU ``cuda``), or ``auto`` (a GPU when present). Asking for a GPU that
    is absent raises :class:`DeviceError` instead of falling back.

    Under torchrun with several processes a GPU is ``cuda:LOCAL_RANK``, one
    GPU per process on each machine (choose them with CUDA_VISIBLE_DEVICES)."""
    name = (name or "auto").lower()
    if name in ("rocm", "hip"):
        name = "cuda"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "ROCm" if torch.version.hip else ("CUDA" if torch.version.cuda else "CPU-only")
            advice = ("use --device cpu or install a GPU build of torch" if build == "CPU-only" else
                      "check the GPU driver (nvidia-smi or rocm-smi) and CUDA_VISIBLE_DEVICES, or use --device cpu")
            raise DeviceError(f"device {name!r} requested but no GPU is visible to PyTorch "
                              f"(this is a {build} build of torch {torch.__version__}); {advice}")
        env = launch_env()
        if env.world_size > 1:
            if name != "cuda":
                raise DeviceError(f"device {name!r}: under torchrun each process uses cuda:LOCAL_RANK; "
                                  "ask for plain 'cuda' and choose the GPUs with CUDA_VISIBLE_DEVICES")
            if env.local_rank >= torch.cuda.device_count():
                raise DeviceError(f"LOCAL_RANK {env.local_rank} but {torch.cuda.device_count()} GPU(s) "
                                  "visible: start at most one process per GPU (--nproc_per_node)")
            name = f"cuda:{env.local_rank}"
        return torch.device(name)
    raise DeviceError(f"unknown device {name!r} (want one of {', '.join(DEVICES)})")


def describe_device(device: torch.device) -> str:
    """A human-readable name for logs."""
    if device.type == "cuda":
        kind = "ROCm" if torch.version.hip else "CUDA"
        return f"{kind} {torch.cuda.get_device_name(device)}"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'' if n == 1 else 's'})"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return set(value.split())
    except OSError:
        pass
    return set()


# x86 instructions that multiply uint8 by int8 and add in 32 bits.
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def int8_pairs_saturate(flags: set[str] | None = None) -> bool:
    """Whether ONNX Runtime's int8 kernels on this CPU add pairs of uint8 x
    int8 products in 16 bits (an x86 CPU with AVX2 but no VNNI), so that
    full-range 8-bit weights can overflow (common/quantize.py)."""
    flags = cpu_flags() if flags is None else flags
    return "avx2" in flags and not flags & INT8_DOT_FLAGS


def native_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (avx512_bf16 or AMX); without
    it PyTorch emulates bfloat16, which is slower than float32."""
    return bool((cpu_flags() if flags is None else flags) & {"avx512_bf16", "amx_bf16"})


def autocast_dtype(device: torch.device) -> torch.dtype:
    """Mixed precision's compute type: float16 on a GPU, bfloat16 on a CPU."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16
