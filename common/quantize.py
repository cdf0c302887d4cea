"""Int8 quantisation of an ONNX export (:mod:`common.export`) with ONNX
Runtime: static, QDQ format, per-channel int8 weights, uint8 activations,
calibrated on face crops from training photos (never on held-out ones).

Weights use 7 bits of their 8 (ONNX Runtime's ``reduce_range``) by default.
On x86 CPUs without VNNI instructions (AVX2 only, and AVX-512 before
Cascade Lake) ONNX Runtime's uint8 x int8 kernels add pairs of products in
16-bit registers, which saturate with full-range weights and move points.
With 7-bit weights no pair can overflow (2 x 255 x 64 < 32768), so every CPU
computes the same points; the bit given up costs next to nothing (both
measured: docs/ablations.md, its 7-bit row).

Only the backbone (the convolutions, their ReLUs and residual additions, the
stem's max-pool) is quantised. The head's two 1x1 convolutions and the
decoding after them stay float32: they cost little, and the x/y offsets are
where quantisation steps would move points.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .errors import CheckpointError
from .dataset import split_like_run
from .readers import read_datasets
from .images import read_image, rgb_to_gray
from .landmarks import landmark_box
from . import transforms as T

BACKBONE_OPS = ("Conv", "Relu", "Add", "MaxPool")


def calibration_batches(description: dict, data: list[str], faces: int = 256, batch: int = 32,
                        seed: int = 0) -> tuple[list[np.ndarray], int]:
    """Normalised crops ``(B, 1, S, S)`` float32 for calibration, from the
    faces of ``data`` that the model's training run trained on: photos its
    run held out (``config``'s split) are left out. The crop is the
    evaluation crop of each face's landmark box, jittered as training did
    (detector boxes are never exact). Returns the batches and the number of
    held-out faces skipped."""
    train, held = split_like_run(read_datasets(data), description.get("config") or {})
    if not train:
        raise CheckpointError("no training faces to calibrate on in " + ", ".join(data))
    rng = np.random.default_rng(seed)
    chosen = [train[i] for i in sorted(rng.choice(len(train), min(faces, len(train)), replace=False))]
    from .schemes import scheme_of
    size, crop = int(description["input_size"]), scheme_of(description).crop
    norm = description.get("normalisation") or {}
    mean, std = float(norm.get("mean", 0.5)), float(norm.get("std", 0.25))
    crops, last_path, gray = [], None, None
    for r in chosen:
        if r.image_path != last_path:
            gray, last_path = rgb_to_gray(read_image(r.image_path)), r.image_path
        region = T.jitter_region(T.task_region(crop, landmark_box(r.points)), rng)
        crops.append(T.region_tensor(gray, region, size, mean, std).numpy())
    stacked = np.stack(crops).astype(np.float32)
    return [stacked[i:i + batch] for i in range(0, len(stacked), batch)], len(held)


def backbone_nodes(model) -> list[str]:
    """Names of the nodes up to the backbone's last ReLU (the features both
    heads read), restricted to :data:`BACKBONE_OPS`."""
    relus = [i for i, n in enumerate(model.graph.node) if n.op_type == "Relu"]
    if not relus:
        raise CheckpointError("the ONNX graph has no ReLU: not a ResNet export of this toolkit")
    return [n.name for n in model.graph.node[:relus[-1] + 1] if n.op_type in BACKBONE_OPS]


def quantize_onnx(src: str, dst: str, batches: list[np.ndarray], calibrate: str = "minmax",
                  reduce_range: bool = True) -> dict:
    """Write the int8 twin of export ``src`` to ``dst`` (atomically), with
    ``src``'s metadata plus a ``quantization`` entry. Returns that entry.
    ``reduce_range``: 7-bit weights (the module's docstring says why)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str):
            self.it = iter([{name: b} for b in batches])

        def get_next(self):
            return next(self.it, None)

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    source = onnx.load(src)
    meta = {p.key: p.value for p in source.metadata_props}
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quant-", dir=folder) as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        nodes = backbone_nodes(onnx.load(pre))
        out = os.path.join(tmp, "int8.onnx")
        quantize_static(pre, out, Reader(source.graph.input[0].name), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=reduce_range,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=methods[calibrate], nodes_to_quantize=nodes,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        info = {"method": f"static QDQ, per-channel int8 weights{' (7-bit range)' if reduce_range else ''}, "
                          "uint8 activations (ONNX Runtime)",
                "calibration": calibrate, "calibration_faces": int(sum(len(b) for b in batches)),
                "quantized_nodes": len(nodes), "reduce_range": bool(reduce_range)}
        proto = onnx.load(out)
        del proto.metadata_props[:]
        for k, v in {**meta, "quantization": json.dumps(info)}.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, os.path.join(tmp, "final.onnx"))
        os.replace(os.path.join(tmp, "final.onnx"), dst)
    return info
