"""Build weights/blazeface.pt (the BlazeFace short-range face detector) from
the mediapipe wheel, which ships Google's model file
mediapipe/modules/face_detection/face_detection_short_range.tflite under
the Apache-2.0 licence (see weights/BLAZEFACE_LICENSE).

    pip download mediapipe==0.10.21 --no-deps -d /tmp/mp
    pip install tflite==2.18.0          # this script's parser only; nothing at run time needs it
    python training/tools/import_blazeface.py /tmp/mp/mediapipe-0.10.21-*.whl --output weights/blazeface.pt

Only the model file is read from the wheel; mediapipe itself is never
installed or imported. The model file's graph is checked against
common/blazeface.py's network layer by layer (kind, kernel, stride,
padding, activation) before its float16 weights are copied; the output
records where they came from.
"""
import argparse
import hashlib
import os
import sys
import zipfile

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from common.errors import UserError  # noqa: E402
from common.model_options import shipped  # noqa: E402

MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wheel", help="mediapipe-*.whl (from pip download mediapipe --no-deps), or the .tflite file")
    p.add_argument("--output", default=shipped("blazeface.pt"), help="file to write (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    return p


def read_model(path: str) -> tuple[bytes, str]:
    """The model file's bytes and a description of where they came from."""
    if path.endswith(".tflite"):
        try:
            with open(path, "rb") as f:
                return f.read(), os.path.basename(path)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        with zipfile.ZipFile(path) as wheel:
            return wheel.read(MEMBER), f"{os.path.basename(path)}: {MEMBER}"
    except (OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"cannot open {path} as a wheel: {exc}") from None
    except KeyError:
        raise UserError(f"{path} has no {MEMBER}") from None


def conv_layers(raw: bytes) -> list[dict]:
    """The graph's convolutions in order: ``{"name", "depthwise", "stride",
    "same", "weight" (numpy, TFLite layout), "bias"}``, their weights
    followed through DEQUANTIZE ops (the file stores float16). Checks that
    every other op is one the network in common/blazeface.py has."""
    import numpy as np
    try:
        import tflite
    except ImportError:
        raise UserError("this script parses the model with the tflite package: pip install tflite==2.18.0") from None
    try:
        model = tflite.Model.GetRootAsModel(raw, 0)
        graph = model.Subgraphs(0)
    except Exception as exc:
        raise UserError(f"not a TFLite model file: {type(exc).__name__}") from None
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16}

    def constant(j):
        t = graph.Tensors(j)
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or t.Type() not in dtypes:
            return None
        return np.frombuffer(data.tobytes(), dtypes[t.Type()]).reshape(t.ShapeAsNumpy())

    produced, layers = {}, []  # produced: tensor -> the constant a DEQUANTIZE made from
    allowed = {"RELU", "ADD", "PAD", "MAX_POOL_2D", "RESHAPE", "CONCATENATION"}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        ins, outs = op.InputsAsNumpy(), op.OutputsAsNumpy()
        if kind == "DEQUANTIZE":
            produced[outs[0]] = constant(ins[0]).astype(np.float32)
        elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            options = (tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions)()
            table = op.BuiltinOptions()
            options.Init(table.Bytes, table.Pos)
            if options.DilationHFactor() != 1 or options.DilationWFactor() != 1:
                raise UserError(f"op {i}: dilated convolutions are not in BlazeFace")
            w, b = (produced.get(j, constant(j)) for j in ins[1:3])
            layers.append({"name": graph.Tensors(ins[1]).Name().decode(), "depthwise": kind != "CONV_2D",
                           "stride": options.StrideH(), "same": options.Padding() == tflite.Padding.SAME,
                           "relu": options.FusedActivationFunction() == tflite.ActivationFunctionType.RELU,
                           "weight": w, "bias": b})
        elif kind not in allowed:
            raise UserError(f"op {i} is {kind}, which the BlazeFace network in common/blazeface.py lacks")
    return layers


def state_dict(layers: list[dict]) -> dict:
    """The network's state dict from the file's convolutions, checking each
    against the layer it fills (same order: stem, blocks, then the heads)."""
    import torch
    from common.blazeface import BlazeFaceNet
    net = BlazeFaceNet()
    targets = [("stem", net.stem, False, 2)]
    for k, block in enumerate(net.blocks):
        targets += [(f"blocks.{k}.dw", block.dw, True, block.stride), (f"blocks.{k}.pw", block.pw, False, 1)]
    targets += [(f"cls.{k}", c, False, 1) for k, c in enumerate(net.cls)]
    targets += [(f"reg.{k}", r, False, 1) for k, r in enumerate(net.reg)]
    if len(layers) != len(targets):
        raise UserError(f"the model file has {len(layers)} convolutions, BlazeFace {len(targets)}")
    state = {}
    for layer, (name, conv, depthwise, stride) in zip(layers, targets):
        w = torch.from_numpy(layer["weight"].copy())
        w = w.permute(3, 0, 1, 2) if depthwise else w.permute(0, 3, 1, 2)  # TFLite OHWI / 1HWC -> OIHW
        same = conv.kernel_size[0] > 1  # 3x3 and 5x5 use "same" padding, 1x1 either
        head = name.startswith(("cls", "reg"))
        if (layer["depthwise"] != depthwise or layer["stride"] != stride or tuple(w.shape) != tuple(conv.weight.shape)
                or (same and not layer["same"]) or layer["relu"] or
                head != any(s in layer["name"] for s in ("classificator", "regressor"))):
            raise UserError(f"layer {name} does not match the model file's {layer['name']} "
                            f"({tuple(w.shape)}, stride {layer['stride']})")
        state[f"{name}.weight"] = w.contiguous().half()
        state[f"{name}.bias"] = torch.from_numpy(layer["bias"].copy()).half()
    net.load_state_dict({k: v.float() for k, v in state.items()})  # strict: every tensor filled
    return state


def main(args: argparse.Namespace) -> int:
    from common.checkpoint import atomic_save
    from common.blazeface import WEIGHTS_FORMAT, BlazeFace

    if os.path.exists(args.output) and not args.force:
        raise UserError(f"{args.output} exists (use --force to replace it)")
    raw, source = read_model(args.wheel)
    state = {"format": WEIGHTS_FORMAT, "version": 1, "source": source,
             "sha256": hashlib.sha256(raw).hexdigest(),
             "licence": "Apache-2.0 (Google LLC, MediaPipe face_detection_short_range.tflite); network: "
                        "Bazarevsky et al., BlazeFace, 2019",
             "net": state_dict(conv_layers(raw))}
    BlazeFace(state, backend="torch")  # the weights must fit the network
    atomic_save(state, args.output)
    print(f"{args.output}: BlazeFace short-range from {source}, {os.path.getsize(args.output) / 2**20:.2f} MB")
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
