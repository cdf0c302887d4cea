"""Build weights/mtcnn.pt (the MTCNN face detector's three networks) from the
facenet-pytorch package's wheel, which carries the original authors' MTCNN
weights converted to PyTorch (MIT licence, see weights/MTCNN_LICENSE).

    pip download facenet-pytorch==2.6.0 --no-deps -d /tmp/fp
    python training/tools/import_mtcnn.py /tmp/fp/facenet_pytorch-2.6.0-py3-none-any.whl --output weights/mtcnn.pt

Only the wheel's three weight files are read (facenet_pytorch/data/*.pt);
facenet-pytorch itself is never installed or imported (it pins old torch
and numpy versions). The output records where the weights came from.
"""
import argparse
import hashlib
import io
import os
import sys
import zipfile

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from common.errors import InputError  # noqa: E402
from common.model_options import shipped  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wheel", help="facenet_pytorch-*.whl (from pip download facenet-pytorch --no-deps)")
    p.add_argument("--output", default=shipped("mtcnn.pt"),
                   help="file to write (default: this repository's weights/mtcnn.pt)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    return p


def main(args: argparse.Namespace) -> int:
    import torch
    from common.checkpoint import atomic_save
    from common.mtcnn import NETS, WEIGHTS_FORMAT, Mtcnn

    if os.path.exists(args.output) and not args.force:
        raise InputError(f"{args.output} exists (use --force to replace it)")
    try:
        wheel = zipfile.ZipFile(args.wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot open {args.wheel} as a wheel: {exc}") from None
    state = {"format": WEIGHTS_FORMAT, "version": 1,
             "source": f"{os.path.basename(args.wheel)}: facenet_pytorch/data/{{pnet,rnet,onet}}.pt",
             "licence": "MIT (facenet-pytorch, Copyright (c) 2019 Timothy Esler); networks and original "
                        "weights: Zhang et al., IEEE SPL 2016",
             "sha256": {}}
    with wheel:
        for name in NETS:
            member = f"facenet_pytorch/data/{name}.pt"
            try:
                raw = wheel.read(member)
            except KeyError:
                raise InputError(f"{args.wheel} has no {member}") from None
            state["sha256"][name] = hashlib.sha256(raw).hexdigest()
            state[name] = {k: v.float().contiguous() for k, v in
                           torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True).items()}
    Mtcnn(state)  # the state dicts must fit the networks
    atomic_save(state, args.output)
    print(f"{args.output}: MTCNN P-, R- and O-Net from {os.path.basename(args.wheel)}, "
          f"{os.path.getsize(args.output) / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
