"""ONNX export (decoded points, dynamic batch, self-description) agrees with
PyTorch and runs inside FaceLandmarker; inference/benchmark.py writes its
figures with stable keys. Small random checkpoints: plumbing, not accuracy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from inference_helpers import REPO, portrait_path

BENCHMARK = REPO / "inference" / "benchmark.py"
EXPORT = REPO / "inference" / "export_onnx.py"
INPUT_SIZE = 64


def _missing_onnx_tools() -> str | None:
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            return name
    return None


needs_onnx = pytest.mark.skipif(_missing_onnx_tools() is not None,
                                reason=f"{_missing_onnx_tools()} is not installed "
                                       "(pip install onnx onnxscript onnxruntime)")


def _run(script, *args, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> str:
    """A random 68-point pip model at 64 px, saved as common/training.py saves one."""
    from common import checkpoint as C
    from common.landmarks import FACE_INDICES
    from common.model import build_model
    torch.manual_seed(0)
    model = build_model(68, "pip", INPUT_SIZE)
    # Untrained score maps are nearly flat, and an argmax over near-ties may
    # legitimately pick another cell after any rounding difference; clear
    # winners make the comparison with PyTorch a sharp test.
    torch.nn.init.normal_(model.score.weight, std=0.5)
    path = str(tmp_path_factory.mktemp("bench") / "face.pt")
    C.atomic_save({**C.describe(model, "face", FACE_INDICES, 0.5, 0.25), "config": {"epochs": 1},
                   "scores": {"nme": 99.0}, "epoch": 1, "model": C.clean_state_dict(model.state_dict())}, path)
    return path


@pytest.fixture(scope="module")
def onnx_file(small_checkpoint) -> str:
    if _missing_onnx_tools():
        pytest.skip(f"{_missing_onnx_tools()} is not installed (pip install onnx onnxscript onnxruntime)")
    import warnings
    from common.export import export_onnx
    out = os.path.splitext(small_checkpoint)[0] + ".onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(small_checkpoint, out)
    return out


@needs_onnx
def test_onnx_export_matches_torch_and_describes_itself(small_checkpoint, onnx_file):
    from common.checkpoint import load_checkpoint
    from common.export import compare_with_torch
    from common.landmark_model import LandmarkModel, OnnxBackend

    c = compare_with_torch(onnx_file, small_checkpoint, batch=3)
    assert c["points"] == 3 * 68
    assert c["differ"] == 0 and c["max_abs"] < 1e-3, c

    ckpt = load_checkpoint(small_checkpoint)
    m = LandmarkModel(onnx_file, "face", torch.device("cpu"))
    assert isinstance(m.backend, OnnxBackend)
    assert m.task == "face" and m.indices == ckpt["landmark_indices"] and m.input_size == INPUT_SIZE
    assert (m.mean, m.std) == (0.5, 0.25)
    assert m.description["crop"] == ckpt["crop"] and m.epoch == 1 and m.scores == {"nme": 99.0}
    for b in (1, 5):  # the batch dimension is free
        out = m.backend.run(torch.zeros(b, 1, INPUT_SIZE, INPUT_SIZE))
        assert out.shape == (b, 68, 2) and out.dtype == np.float32


@needs_onnx
def test_face_landmarker_takes_onnx_weights(small_checkpoint, onnx_file):
    from common.errors import CheckpointError
    from common.landmark_model import LandmarkModel, OnnxBackend
    from common.predictor import FaceLandmarker

    pt = FaceLandmarker(small_checkpoint, device="cpu")
    ox = FaceLandmarker(onnx_file, device="cpu")
    assert isinstance(ox.face_model.backend, OnnxBackend)
    a, b = pt.detect_landmarks(portrait_path()), ox.detect_landmarks(portrait_path())
    assert len(a) == len(b) == 1
    assert b[0].points.shape == (68, 2) and b[0].points.dtype == np.float32
    # Points are in image pixels: the crop is about 4x the 64 px input here.
    assert np.abs(a[0].points - b[0].points).max() < 0.01
    with pytest.raises(CheckpointError, match="for the 'face' task, but the 'eyes' task is needed"):
        LandmarkModel(onnx_file, "eyes", torch.device("cpu"))


@needs_onnx
def test_int8_export_quantises_the_backbone_only(small_checkpoint, tmp_path, monkeypatch, capsys):
    """export_onnx.py --int8: calibrated on a dataset's faces, described like
    the float export, backbone convolutions quantised, head left in float32,
    and points close to PyTorch's on real crops."""
    import onnx
    from synthetic import synthetic_xml_dataset
    from common.landmark_model import LandmarkModel
    from common.quantize import calibration_batches

    data = synthetic_xml_dataset(str(tmp_path / "data"), 12, seed=3)
    out = tmp_path / "face.int8.onnx"
    r = _run(EXPORT, "--weights", small_checkpoint, "--int8", "--calib-data", data, "--calib-faces", 8,
             "-o", out, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "calibration: 8 training faces" in r.stdout and "point shift median" in r.stdout
    graph = onnx.load(str(out)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 22  # 20 in the backbone (batch norm folded) + the head's score and offset
    weight_q = [c for c in convs if c.input[1] not in {i.name for i in graph.initializer}]
    assert len(weight_q) == 20, "backbone conv weights come through DequantizeLinear, the head's do not"
    m = LandmarkModel(str(out), "face", torch.device("cpu"))
    assert m.description["quantization"]["calibration_faces"] == 8 and m.input_size == INPUT_SIZE
    from common.checkpoint import load_model
    model, ckpt = load_model(small_checkpoint)
    batches, held = calibration_batches(ckpt, [data], faces=8)
    x = torch.from_numpy(np.concatenate(batches))
    with torch.inference_mode():
        ref = model.predict(x).numpy()
    out = m.backend.run(x)
    assert held == 0 and x.shape == (8, 1, INPUT_SIZE, INPUT_SIZE)
    # An untrained model's score maps have near-ties that int8 rounding may
    # break either way, so only the range is checked here; agreement is
    # tested on trained weights below.
    assert out.shape == ref.shape and np.isfinite(out).all()
    assert (np.abs(out - INPUT_SIZE / 2) < INPUT_SIZE).all()  # cell + offset: never far off the crop
    r = _run(EXPORT, "--weights", small_checkpoint, "--int8", "-o", tmp_path / "x.onnx")
    assert r.returncode == 2 and "--calib-data" in r.stderr
    r = _run(EXPORT, "--weights", small_checkpoint, "--full-range", "--calibration", "entropy", "-o", tmp_path / "y.onnx")
    assert r.returncode == 2 and "--calibration, --full-range need --int8" in r.stderr

    # The weights use 7 bits (no 16-bit saturation on CPUs without VNNI); --full-range uses all 8.
    def weight_range(path):
        from onnx import numpy_helper
        g = onnx.load(str(path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        q = [inits[n.input[0]] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
             and inits[n.input[0]].dtype == np.int8]
        assert len(q) == 20
        return max(int(np.abs(w.astype(np.int32)).max()) for w in q)
    assert weight_range(tmp_path / "face.int8.onnx") <= 64
    assert m.description["quantization"]["reduce_range"] is True
    full = tmp_path / "full.int8.onnx"
    r = _run(EXPORT, "--weights", small_checkpoint, "--int8", "--calib-data", data, "--calib-faces", 8,
             "--full-range", "--no-check", "-o", full, timeout=300)
    assert r.returncode == 0, r.stderr
    assert weight_range(full) == 127
    assert LandmarkModel(str(full), "face", torch.device("cpu")).description["quantization"]["reduce_range"] is False
    # On a CPU whose int8 kernels saturate, loading the 8-bit file says so once; the 7-bit one and
    # the reference arithmetic say nothing.
    import common.landmark_model as lm
    monkeypatch.setattr(lm, "int8_pairs_saturate", lambda: True)
    capsys.readouterr()
    LandmarkModel(str(full), "face", torch.device("cpu"))
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "overflow" in err and "--int8" in err
    LandmarkModel(str(tmp_path / "face.int8.onnx"), "face", torch.device("cpu"))
    LandmarkModel(str(full), "face", torch.device("cpu"), int8_reference=True)
    assert capsys.readouterr().err == ""


@needs_onnx
def test_int8_twin_of_trained_weights_agrees_on_a_real_face(tmp_path):
    """Quantising the trained face model moves the portrait's points by a
    small fraction of a pixel of the input: a trained model's score maps
    have clear winners, so the bound follows from int8 rounding, not luck."""
    from common import transforms as T
    from common.checkpoint import load_model
    from common.export import export_onnx
    from common.images import read_image, rgb_to_gray
    from common.landmark_model import LandmarkModel
    from common.landmarks import landmark_box
    from common.predictor import FaceLandmarker
    from common.quantize import quantize_onnx

    weights = REPO / "weights" / "face.pt"
    if not weights.is_file():
        pytest.skip("trained weights/face.pt not present")
    model, ckpt = load_model(str(weights))
    size = int(ckpt["input_size"])
    gray = rgb_to_gray(read_image(portrait_path()))
    box = landmark_box(FaceLandmarker(str(weights), device="cpu").detect_landmarks(portrait_path())[0].points)
    # Crops of the portrait shifted and scaled a little: calibration and test faces.
    crops = []
    for dx, dy, s in [(0, 0, 1.0), (0.04, 0, 1.05), (-0.04, 0.03, 0.95), (0, -0.04, 1.1), (0.03, 0.03, 0.9)]:
        side = box[2] - box[0]
        c = np.array([(box[0] + box[2]) / 2 + dx * side, (box[1] + box[3]) / 2 + dy * side])
        b = np.r_[c - s * side / 2, c + s * side / 2].astype(np.float32)
        crops.append(T.region_tensor(gray, T.task_region("face", b), size, 0.5, 0.25))
    x = torch.stack(crops)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(str(weights), str(tmp_path / "face.onnx"))
    quantize_onnx(str(tmp_path / "face.onnx"), str(tmp_path / "face.int8.onnx"), [x.numpy()])
    q = LandmarkModel(str(tmp_path / "face.int8.onnx"), "face", torch.device("cpu"))
    with torch.inference_mode():
        ref = model.predict(x).numpy()
    native = q.backend.run(x)
    shift = np.linalg.norm(native - ref, axis=2)
    assert np.median(shift) < 0.25 and shift.max() < 2.0, (np.median(shift), shift.max())
    # This CPU's int8 kernels give the points of exact int8 arithmetic, VNNI or not, up to rounding
    # (median 0.02 px, max 0.15 on a 2-core AVX2 EPYC; full-range weights saturate there: 0.29, 3.2).
    exact = LandmarkModel(str(tmp_path / "face.int8.onnx"), "face", torch.device("cpu"), int8_reference=True)
    apart = np.linalg.norm(native - exact.backend.run(x), axis=2)
    assert np.median(apart) < 0.05 and apart.max() < 0.5, (np.median(apart), apart.max())


def test_default_weights_prefer_int8_on_a_cpu(tmp_path, monkeypatch):
    from common import model_options as MO
    monkeypatch.setattr(MO, "WEIGHTS_DIR", str(tmp_path))

    def pick(task, device, pt_only=False):
        return os.path.basename(MO.default_weights(task, torch.device(device), pt_only)[0])
    monkeypatch.setattr(MO, "onnxruntime_available", lambda: True)
    assert pick("face", "cpu") == "face.pt"  # no int8 file
    (tmp_path / "face.int8.onnx").write_bytes(b"x")
    assert pick("face", "cpu") == "face.int8.onnx"
    assert pick("face", "cpu", pt_only=True) == "face.pt"  # the PyTorch levers want a .pt
    assert pick("face", "cuda") == "face.pt"  # no accurate model
    monkeypatch.setattr(MO, "onnxruntime_available", lambda: False)
    assert pick("face", "cpu") == "face.pt"
    # on a GPU the face task takes the most accurate model when it is there; a CPU never does
    (tmp_path / MO.ACCURATE_FACE_WEIGHTS).write_bytes(b"x")
    assert pick("face", "cuda") == MO.ACCURATE_FACE_WEIGHTS
    assert pick("face", "cpu") == "face.pt"
    assert pick("eyes", "cuda") == "eyes.pt"
    # every pick comes with its reason, and the log line names the file and the option
    path, why = MO.default_weights("face", torch.device("cpu"))
    line = MO.choice_line(path, why)
    assert why and "face.pt" in line and why in line and "--weights" in line


def test_export_refuses_to_overwrite(tmp_path):
    weights = tmp_path / "face.pt"
    weights.write_bytes(b"not a checkpoint")
    existing = tmp_path / "face.onnx"
    existing.write_bytes(b"keep me")
    r = _run(EXPORT, "--weights", weights)
    assert r.returncode == 2 and "already exists" in r.stderr and "--force" in r.stderr
    assert existing.read_bytes() == b"keep me"


def test_benchmark_writes_its_figures(small_checkpoint, tmp_path):
    out = tmp_path / "bench.json"
    r = _run(BENCHMARK, "--weights", small_checkpoint, "--no-eyes", "--repeats", "1", "--warmup", "0",
             "--no-startup", "--folder-images", "4", "--video-frames", "6", "--no-mediapipe", "--json", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["folder_images_per_s"] > 0 and doc["folder_images_per_s_one_by_one"] > 0
    assert doc["video_fps_tracking"] > 0 and doc["video_fps_detect_every_frame"] > 0
    assert doc["folder"]["images"] == 4 and doc["folder"]["faces"] == 4 and doc["folder"]["workers"] == 2
    assert doc["mediapipe"] == {"available": False, "version": None, "note": "skipped (--no-mediapipe)"}
    assert doc["format"] == "face-landmark-benchmark" and doc["version"] == 1
    for key in ("cpu", "logical_cpus", "torch", "threads", "loadavg_1min", "cpu_busy_before"):
        assert key in doc["machine"]
    busy = doc["machine"]["cpu_busy_before"]
    assert busy is None or 0.0 <= busy <= 1.0
    s = doc["settings"]
    assert s["backend"] == "torch" and s["threads"] >= 1 and s["repeats"] == 1
    assert s["channels_last"] is s["bf16"] is s["compile"] is False
    assert doc["models"]["eyes"] is None and doc["models"]["face"]["points"] == 68
    assert doc["input_size"] == {"face": INPUT_SIZE} and doc["head"] == {"face": "pip"}
    assert doc["ms_per_face_batch1"]["face"] > 0 and doc["faces_per_s_batch32"]["face"] > 0
    names = ["grace_hopper", "grace_hopper_2x2", "grace_hopper_3x3"]
    assert list(doc["ms_per_image"]) == names and all(v > 0 for v in doc["ms_per_image"].values())
    assert doc["images"]["grace_hopper_2x2"] == {"height": 1200, "width": 1024}
    assert doc["faces_per_image"] == {"grace_hopper": 1, "grace_hopper_2x2": 4, "grace_hopper_3x3": 9}
    # Each detector alone and in the whole predict, on the same images, finding the same faces.
    assert list(doc["detectors"]) == ["blazeface", "mtcnn"]
    for fig in doc["detectors"].values():
        assert fig["faces_per_image"] == doc["faces_per_image"]
        assert all(fig["ms_per_image_detect"][n] > 0 and fig["ms_per_image"][n] > 0 for n in names)
    if doc["dlib"]["available"]:
        assert list(doc["dlib_detect_ms_per_image"]) == names
        assert all(doc["dlib_detect_ms_per_image"][n] > 0 for n in names)
    assert "blazeface alone, grace_hopper_2x2 (faces 4)" in r.stdout
    assert doc["startup_s"] is None and doc["peak_mb"] is None  # --no-startup: no fresh processes
    for key in ("dlib_ms_per_face_batch1", "dlib_faces_per_s_batch32", "dlib_ms_per_image",
                "dlib_faces_per_image", "dlib_detect_ms_per_image", "dlib_startup_s", "dlib_peak_mb",
                "ratio_ours_over_dlib"):
        assert key in doc
    if not doc["dlib"]["available"]:
        assert doc["dlib_ms_per_image"] is None and doc["ratio_ours_over_dlib"] is None
        assert "pip install dlib-bin face_recognition_models" in r.stdout
    # The table went to stdout; the JSON file is never overwritten without --force.
    assert "faces/s, batch 32" in r.stdout and "ms/image" in r.stdout
    before = out.read_text()
    r = _run(BENCHMARK, "--weights", small_checkpoint, "--json", out)
    assert r.returncode == 2 and "already exists" in r.stderr
    assert out.read_text() == before


def test_benchmark_times_the_test_time_options(small_checkpoint):
    """--flip-test and --multi-crop reach the timed model: one face's figure
    runs its seven crops and their mirrors (two batches of 7), and the
    settings record both; the float32 comparison stays one plain crop."""
    sys.path.insert(0, str(REPO / "inference"))
    from benchmark import build_landmarker, get_args_parser
    args = get_args_parser().parse_args(["--weights", small_checkpoint, "--flip-test", "--multi-crop"])
    fl, levers = build_landmarker(args, small_checkpoint, None)
    assert levers["flip_test"] is levers["multi_crop"] is True
    backend, sizes = fl.face_model.backend, []
    real = backend.run_with_scores
    backend.run_with_scores = lambda batch: (sizes.append(len(batch)), real(batch))[1]
    gray = np.full((200, 200), 128, np.uint8)
    box = np.array([50, 50, 150, 150], np.float32)
    fl.face_model.predict_boxes(gray, [box])
    assert sizes == [7, 7]
    sizes.clear()
    fl.face_model.predict_boxes(gray, [box], flip=False, multi=False)
    assert sizes == [1]


def test_benchmark_torch_levers_predict_with_scores(small_checkpoint):
    """The benchmark's --bf16 and --channels-last reach the PyTorch back end
    of the landmarker it times (as predict.py builds it); it still gives
    points and scores, near the plain model's."""
    sys.path.insert(0, str(REPO / "inference"))
    from benchmark import build_landmarker, get_args_parser
    from common.landmark_model import LandmarkModel
    from common.model_options import TorchLevers
    args = get_args_parser().parse_args(["--weights", small_checkpoint, "--bf16", "--channels-last"])
    fl, levers = build_landmarker(args, small_checkpoint, None)
    assert levers["bf16"] is levers["channels_last"] is True and levers["compile_s"] is None
    assert fl.face_model.backend.levers == TorchLevers(bf16=True, channels_last=True)
    gray = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    box = np.array([50, 50, 150, 150], np.float32)
    points, scores = fl.face_model.predict_boxes_with_scores(gray, [box])
    plain = LandmarkModel(small_checkpoint, "face", torch.device("cpu")).predict_boxes(gray, [box])
    assert points.shape == (1, 68, 2) and scores.shape == (1, 68) and np.isfinite(points).all()
    assert np.median(np.abs(points - plain)) < 2.0  # bfloat16 moves points a little, not far


def _lever_outputs(path, levers):
    from common.landmark_model import LandmarkModel
    m = LandmarkModel(path, "face", torch.device("cpu"), levers=levers)
    gray = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    boxes = [np.array([50, 50, 150, 150], np.float32), np.array([20, 30, 140, 150], np.float32)]
    return m.predict_boxes_with_scores(gray, boxes)


@pytest.mark.parametrize("names", [("bf16",), ("channels_last",), ("bf16", "channels_last", "compile")])
def test_torch_levers_give_the_plain_back_end_points(small_checkpoint, names):
    """Each lever of the PyTorch back end (the one predict.py and benchmark.py
    use) gives the points and scores of the plain float32 back end: exactly
    but for float rounding without bfloat16, within bfloat16's rounding with
    it. torch.compile compiles when the model loads (a C compiler is needed)."""
    from common.model_options import TorchLevers
    levers = TorchLevers(**{n: True for n in names})
    ref_points, ref_scores = _lever_outputs(small_checkpoint, TorchLevers())
    points, scores = _lever_outputs(small_checkpoint, levers)
    assert points.shape == ref_points.shape and scores.shape == ref_scores.shape
    if levers.bf16:
        assert np.median(np.abs(points - ref_points)) < 0.5 and np.median(np.abs(scores - ref_scores)) < 0.01
    else:
        np.testing.assert_allclose(points, ref_points, atol=1e-3)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-4)


def test_a_failed_compile_is_one_error_not_a_silent_fallback(small_checkpoint, monkeypatch):
    from common.errors import CompileError
    from common.landmark_model import LandmarkModel
    from common.model_options import TorchLevers

    def broken(fn):
        def run(*a, **k):
            raise RuntimeError("no C compiler found\nlong traceback text")
        return run
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(CompileError, match=r"--compile: torch.compile failed here \(RuntimeError: no C compiler "
                                           r"found\)$"):
        LandmarkModel(small_checkpoint, "face", torch.device("cpu"), levers=TorchLevers(compile=True))


@needs_onnx
def test_torch_levers_refuse_onnx_weights_in_one_line(small_checkpoint, onnx_file):
    from common.errors import CheckpointError
    from common.landmark_model import LandmarkModel
    from common.model_options import TorchLevers
    with pytest.raises(CheckpointError, match="--bf16, --channels-last: levers of the PyTorch back end"):
        LandmarkModel(onnx_file, "face", torch.device("cpu"), levers=TorchLevers(bf16=True, channels_last=True))
    from inference_helpers import run_predict
    r = run_predict(portrait_path(), "--weights", onnx_file, "--device", "cpu", "--bf16", "--no-save", "--json", "-")
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {onnx_file}: --bf16: levers of the PyTorch back end, for .pt "
                                             "weights (give the .pt checkpoint, or leave them out)"]


def test_cpu_busy_fraction_sees_other_work():
    """The benchmark's 'other work is running' check reads /proc/stat while
    it sleeps: one busy child process must show as at least one core's worth."""
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat on this platform")
    sys.path.insert(0, str(REPO / "inference"))
    from benchmark import cpu_busy_fraction
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        busy = cpu_busy_fraction(0.5)
    finally:
        spin.kill()
        spin.wait()
    assert busy is not None and busy >= 0.9 / (os.cpu_count() or 1)


def test_which_cpus_saturate_int8_pairs():
    from common.device import int8_pairs_saturate
    assert int8_pairs_saturate({"sse4_2", "avx2", "fma"})                    # AVX2 only (Zen 3, Haswell)
    assert int8_pairs_saturate({"avx2", "avx512f", "avx512bw"})              # Skylake-SP: AVX-512, no VNNI
    assert not int8_pairs_saturate({"avx2", "avx512f", "avx512_vnni"})       # Cascade Lake and later
    assert not int8_pairs_saturate({"avx2", "avx_vnni"})                     # Alder Lake and later
    assert not int8_pairs_saturate({"fp", "asimd", "asimddp"}) and not int8_pairs_saturate(set())  # ARM, unknown


def test_fresh_process_peak_memory_is_its_own():
    """Linux folds a parent's memory into its child's ru_maxrss across fork and
    exec; the benchmark's fresh processes must report their own peak instead."""
    sys.path.insert(0, str(REPO / "inference"))
    from benchmark import peak_rss_mb
    big = np.ones(512 * 1024 * 1024 // 8)  # touched: 512 MB resident in this process
    parent = peak_rss_mb()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from benchmark import peak_rss_mb; print(peak_rss_mb())")
    r = subprocess.run([sys.executable, "-c", code, str(REPO / "inference")],
                       capture_output=True, text=True, check=True)
    child = float(r.stdout)
    del big
    assert parent > 512 and child < 0.5 * parent, (parent, child)
