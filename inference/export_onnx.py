"""Export a landmark checkpoint (face or eyes) to ONNX.

Install:  pip install onnx onnxscript onnxruntime     (onnxruntime: to check and run it)
Run:
    python inference/export_onnx.py                              # weights/face.pt -> weights/face.onnx
    python inference/export_onnx.py --weights weights/eyes.pt    # -> weights/eyes.onnx
    python inference/predict.py pic.jpg --weights weights/face.onnx

The graph maps a normalised crop batch ``image`` (B, 1, S, S) to the decoded
``points`` (B, K, 2) in input pixels; the batch size is free. The
checkpoint's description (task, landmark indices, input size, normalisation,
crop) is written into the file's metadata, so predict.py needs nothing else.
With onnxruntime installed, the export is checked against PyTorch on a random
batch and the largest point difference printed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="weights/face.pt", help="checkpoint to export (face or eyes)")
    p.add_argument("--output", "-o", default=None,
                   help="ONNX file (default: beside the weights, suffix .onnx)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: %(default)s)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the comparison with PyTorch")
    return p


def main(args: argparse.Namespace) -> int:
    output = args.output or os.path.splitext(args.weights)[0] + ".onnx"
    if os.path.abspath(output) == os.path.abspath(args.weights):
        print(f"error: {output}: the output would overwrite the weights", file=sys.stderr)
        return 2
    if os.path.exists(output) and not args.force:
        print(f"error: {output}: already exists (use --force to overwrite)", file=sys.stderr)
        return 2
    import warnings
    from common.onnx_model import compare_with_torch, export_onnx

    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing chatter
        meta = export_onnx(args.weights, output, args.opset)
    print(f"{args.weights} -> {output} ({os.path.getsize(output) / 1e6:.1f} MB, {time.time() - t0:.1f}s): "
          f"{json.loads(meta['task'])} model, {len(json.loads(meta['landmark_indices']))} points, "
          f"input {meta['input_size']} px, dynamic batch, opset {args.opset}")
    if not args.check:
        return 0
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("not checked: onnxruntime is not installed (pip install onnxruntime)")
        return 0
    c = compare_with_torch(output, args.weights)
    print(f"check against PyTorch on a random batch: max abs difference {c['max_abs']:.2g} px "
          f"over {c['points']} points")
    if c["differ"]:
        print(f"  {c['differ']} points differ by more than 0.001 px; {c['ties']} of them lie on near-tied "
              "score cells (random input; either cell is a correct argmax)")
        if c["differ"] > c["ties"]:
            print("error: the export does not match PyTorch", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
