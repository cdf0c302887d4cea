"""Turn a training checkpoint into a compact released one (float16 tensors,
no optimizer state; loads back as float32).

    python training/tools/release_weights.py runs/face/1/best.pt weights/face.pt

Given several checkpoints, it releases their weight average (a "model soup"):
they must be runs of the same model started from the same --init, for
example two last-stage runs with different settings (weights/README.md).

    python training/tools/release_weights.py runs/a/face/1/best.pt runs/b/face/1/best.pt weights/face.pt
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from common.checkpoint import (atomic_save, average_checkpoints, load_checkpoint,  # noqa: E402
                               provenance, release_copy)
from common.cli import output_problem, run_script  # noqa: E402
from common.errors import InputError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="+",
                   help="training checkpoint (best.pt or last.pt); several: release their weight average")
    p.add_argument("output", help="released checkpoint to write")
    p.add_argument("--float32", action="store_true", help="keep float32 tensors")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    return p


def main(args: argparse.Namespace) -> int:
    for source in args.checkpoint:
        problem = output_problem(args.output, source, args.force)
        if problem:
            raise InputError(problem)
    ckpts = [load_checkpoint(path) for path in args.checkpoint]
    ckpt = ckpts[0] if len(ckpts) == 1 else average_checkpoints(ckpts, args.checkpoint)
    atomic_save(release_copy(ckpt, half=not args.float32), args.output)
    print(f"{args.output}: {ckpt['task']} model, {ckpt['head']} head, {ckpt['input_size']}px, {provenance(ckpt)}, "
          f"{os.path.getsize(args.output) / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    run_script(main, get_args_parser())
