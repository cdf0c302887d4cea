"""Turn a training checkpoint into a compact released one (float16 tensors,
no optimizer state; loads back as float32).

    python inference/release_weights.py runs/face/1/best.pt weights/face.pt
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from common.checkpoint import CheckpointError, atomic_save, load_checkpoint, release_copy  # noqa: E402
from common.cli import output_problem  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="training checkpoint (best.pt or last.pt)")
    p.add_argument("output", help="released checkpoint to write")
    p.add_argument("--float32", action="store_true", help="keep float32 tensors")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = p.parse_args()
    problem = output_problem(args.output, args.checkpoint, args.force)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atomic_save(release_copy(ckpt, half=not args.float32), args.output)
    print(f"{args.output}: {ckpt['task']} model, {ckpt['head']} head, {ckpt['input_size']}px, epoch "
          f"{ckpt.get('epoch')}, {os.path.getsize(args.output) / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
