r"""Export a landmark checkpoint (face or eyes) to ONNX, in float32 or int8.

Install:  pip install onnx onnxscript onnxruntime     (onnxruntime: to check, quantise and run it)
Run:
    python inference/export_onnx.py                              # weights/face.pt -> weights/face.onnx
    python inference/export_onnx.py --weights weights/eyes.pt    # -> weights/eyes.onnx
    python inference/predict.py pic.jpg --weights weights/face.onnx
    # int8 (what weights/*.int8.onnx are), calibrated on training faces of the same data:
    python inference/export_onnx.py --int8 --calib-data \
        ../shared/data/300w-subset/labels_300w_subset_train.xml \
        ../shared/data/youtube-faces-keypoints/training_frames_keypoints.csv   # -> weights/face.int8.onnx

The graph maps a normalised crop batch ``image`` (B, 1, S, S) to the decoded
``points`` (B, K, 2) in input pixels; the batch size is free. The
checkpoint's description (task, landmark indices, input size, normalisation,
crop) is written into the file's metadata, so predict.py needs nothing else.
With onnxruntime installed, the export is checked against PyTorch on a random
batch and the largest point difference printed.

``--int8`` quantises the backbone statically (ONNX Runtime, QDQ, per-channel
int8 weights in a 7-bit range, which every x86 CPU computes without
saturation) with ``--calib-faces`` crops from ``--calib-data``; photos that
the checkpoint's training run held out are never used. The int8 model is
compared with PyTorch on those calibration crops (random input means nothing
to a quantised network); measure it with inference/evaluate.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from common.errors import CheckpointError, InputError  # noqa: E402
from common.model_options import add_weights_argument  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_argument(p, "checkpoint to export (face or eyes)", file="face.pt")
    p.add_argument("--output", "-o", default=None,
                   help="ONNX file (default: beside the weights, suffix .onnx)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: %(default)s)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the comparison with PyTorch")
    g = p.add_argument_group("int8")
    g.add_argument("--int8", action="store_true", help="quantise to int8 (default output: <weights>.int8.onnx)")
    g.add_argument("--calib-data", nargs="+", default=None, metavar="DATA",
                   help="datasets for calibration (the training data; held-out photos are skipped)")
    g.add_argument("--calib-faces", type=int, default=256, metavar="N", help="faces to calibrate on")
    g.add_argument("--calibration", choices=("minmax", "percentile", "entropy"), default="minmax",
                   help="ONNX Runtime's calibration method (default: %(default)s)")
    g.add_argument("--full-range", action="store_true",
                   help="8-bit weights instead of 7: only for CPUs with VNNI instructions; on others (AVX2) "
                        "ONNX Runtime's int8 kernels saturate and points move (common/quantize.py)")
    return p


def main(args: argparse.Namespace) -> int:
    output = args.output or os.path.splitext(args.weights)[0] + (".int8.onnx" if args.int8 else ".onnx")
    defaults = get_args_parser()
    int8_only = [f"--{d.replace('_', '-')}" for d in ("calib_data", "calib_faces", "calibration", "full_range")
                 if getattr(args, d) != defaults.get_default(d)]
    if int8_only and not args.int8:
        raise InputError(f"{', '.join(int8_only)} need{'s' if len(int8_only) == 1 else ''} --int8")
    if args.int8 and not args.calib_data:
        raise InputError("--int8 needs --calib-data (the datasets the model was trained on)")
    if os.path.abspath(output) == os.path.abspath(args.weights):
        raise InputError(f"{output}: the output would overwrite the weights")
    if os.path.exists(output) and not args.force:
        raise InputError(f"{output}: already exists (use --force to overwrite)")
    import warnings
    from common.export import compare_with_torch, export_onnx

    t0 = time.time()
    if args.int8:
        return export_int8(args, output)
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
            raise CheckpointError(f"{output}: the export does not match PyTorch")
    return 0


def export_int8(args: argparse.Namespace, output: str) -> int:
    """Float export to a temporary file, then static int8 quantisation."""
    import tempfile
    import warnings
    import numpy as np
    import torch
    from common.checkpoint import load_model
    from common.export import export_onnx
    from common.landmark_model import OnnxBackend
    from common.quantize import calibration_batches, quantize_onnx

    t0 = time.time()
    model, ckpt = load_model(args.weights)
    batches, held = calibration_batches(ckpt, args.calib_data, args.calib_faces)
    print(f"calibration: {sum(len(b) for b in batches)} training faces of {', '.join(args.calib_data)} "
          f"({held} held-out faces left out)")
    with tempfile.TemporaryDirectory(prefix=".export-", dir=os.path.dirname(os.path.abspath(output))) as tmp:
        float_path = os.path.join(tmp, "float.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(args.weights, float_path, args.opset)
            info = quantize_onnx(float_path, output, batches, args.calibration,
                                 reduce_range=not args.full_range)
    print(f"{args.weights} -> {output} ({os.path.getsize(output) / 1e6:.1f} MB, {time.time() - t0:.1f}s): "
          f"{ckpt['task']} model, {info['method']}, {info['quantized_nodes']} nodes quantised, "
          f"calibration {info['calibration']}")
    if not args.check:
        return 0
    sess = OnnxBackend(output, torch.device("cpu"))
    x = torch.from_numpy(np.concatenate(batches))
    with torch.inference_mode():
        ref = model.predict(x).numpy()
    dist = np.linalg.norm(sess.run(x) - ref, axis=2)
    print(f"check against PyTorch on the {len(x)} calibration crops: point shift median {np.median(dist):.3f} px, "
          f"95th percentile {np.percentile(dist, 95):.3f} px, max {dist.max():.2f} px "
          f"(input {sess.description['input_size']} px)")
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
