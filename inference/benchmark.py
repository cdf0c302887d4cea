r"""Speed and memory of the landmark pipeline on this machine, side by side with
dlib's HOG detector and 68-point shape predictor when dlib is installed.

Install:  pip install -r requirements-cpu.txt                   # includes onnxruntime
          pip install onnx onnxscript                   # optional: --backend onnx (exports .pt first)
          pip install dlib-bin face_recognition_models  # optional: the dlib columns
                                            # (dlib-bin: prebuilt dlib; "pip install dlib" compiles)
          pip install mediapipe==0.10.21                # optional: mediapipe's face mesh rows (the
                                            # last wheel that ships its model; it pins numpy<2)
Run (on a quiet machine: other work on the cores makes the figures meaningless):
    python inference/benchmark.py --json bench.json             # shipped defaults (int8 ONNX on a CPU)
    python inference/benchmark.py --min-face 80 --json bench_80.json
    python inference/benchmark.py --weights weights/face.pt --eye-weights weights/eyes.pt --json bench_pt.json
    python inference/benchmark.py --channels-last --bf16 --json bench_bf16.json   # .pt weights, as predict.py
    python inference/benchmark.py --weights weights/face.pt --eye-weights weights/eyes.pt \
        --backend onnx --json bench_onnx_fp32.json
    python inference/benchmark.py --multi-crop --no-dlib --json bench_multi.json   # or --flip-test: their cost

It measures what predict.py runs with the same options: the models, device
(auto: a GPU when present), detector, --refine, --flip-test, --multi-crop and
the PyTorch back end's levers --bf16, --channels-last and --compile
(common/model_options.py, applied by common/landmark_model.py's TorchBackend).

Figures (medians of --repeats runs after --warmup runs):
- landmark model, per model (face, eyes): ms per face at batch 1 and faces/s
  at batch 32, through LandmarkModel.predict_boxes on the portrait's face box
  (crop, resize, normalise, network, decode);
- full predict, ms per image, as predict.py runs by default (FaceLandmarker.
  detect_landmarks on an RGB array already in memory: detection and the face
  model with its second pass, no file decoding; --eyes-per-image adds the eye
  model), on matplotlib's
  Grace Hopper portrait (public domain), 2x2 and 3x3 tilings of it, and the
  images of --images DIR;
- folder (images/s): --folder-images JPEGs made from the portrait (random
  crops, scales, mirror flips) in a temporary folder, read from disk: the
  per-image loop (detect_landmarks(path) one after the other) against
  FaceLandmarker.iter_landmarks (--workers threads read and detect ahead,
  faces of several images share a batch, as predict.py runs folders);
- video (frames/s): --video-frames frames of 640 x 480 with the portrait
  panning across, one face, through common.video.VideoLandmarker as
  predict.py runs video: tracking (video_fps_tracking) and detecting every
  frame (video_fps_detect_every_frame), in memory (no decoding); and
  mediapipe's face mesh in video mode on the same frames;
- detectors (ms per image): each of --compare-detectors alone (its
  ``detect`` on the image in memory) and the whole per-image predict with
  it, on the same images, beside dlib's HOG detector alone and dlib's
  whole pipeline;
- mediapipe's face mesh (468 points, its own detector; static image mode)
  on the same per-image images, when mediapipe is importable;
- start-up (s): a fresh interpreter importing the predictor and loading the
  models, as predict.py does, measured from the parent (median of
  --startup-repeats), with the detector's ONNX exports already cached (as
  from a user's second start on; common/mtcnn.py);
- peak memory (MB): peak RSS of such a fresh process (its own memory, not
  its parent's) after it has also predicted every benchmark image once.
dlib runs the same images and the same face box; ratios are ours / dlib. Its
HOG detector finds faces from about 80 px, 40 px with one upsampling step:
by default it gets the upsampling that matches our --min-face (40 px: 1
step; --min-face 80: none), so both look for the same faces.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from common.detector import add_detector_arguments  # noqa: E402
from common.errors import ImageReadError, InputError, UserError  # noqa: E402
from common.model_options import (TorchLevers, add_device_argument, add_lever_arguments,  # noqa: E402
                                  add_weights_argument)

FORMAT, VERSION = "face-landmark-benchmark", 1
BATCH = 32
DLIB_HINT = ("dlib comparison skipped: dlib or its 68-point model is missing "
             "(pip install dlib-bin face_recognition_models, or give --dlib-model FILE)")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("models and data")
    add_weights_argument(g, "face checkpoint or .onnx export")
    add_weights_argument(g, "eye checkpoint or .onnx export", "--eye-weights")
    g.add_argument("--no-eyes", dest="eyes", action="store_false", help="leave the eye model out")
    g.add_argument("--images", default=None, metavar="DIR", help="more photos to time full predicts on")
    g.add_argument("--eyes-per-image", action="store_true",
                   help="run the eye model in the per-image figures too (predict.py --eyes)")
    add_detector_arguments(g)
    add_device_argument(g)
    g.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                   help="predict.py's second face-model pass (default on, as in predict.py)")
    g.add_argument("--flip-test", action="store_true",
                   help="predict.py --flip-test: every model figure also runs the mirrored crop")
    g.add_argument("--multi-crop", action="store_true",
                   help="predict.py --multi-crop: every model figure runs the seven crops of the final pass")
    g = p.add_argument_group("levers")
    g.add_argument("--backend", default=None, choices=("torch", "onnx"),
                   help="default: as the weights say (.pt: PyTorch, .onnx: ONNX Runtime); onnx: export "
                        ".pt weights to a temporary folder first and run them with ONNX Runtime")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch.set_num_threads(N); also ONNX Runtime's and OpenCV's threads "
                        "(default: the libraries' own defaults)")
    add_lever_arguments(g)
    g = p.add_argument_group("measurement")
    g.add_argument("--repeats", type=int, default=10, metavar="N", help="timed runs per figure (median)")
    g.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed runs before them")
    g.add_argument("--startup-repeats", type=int, default=3, metavar="N",
                   help="fresh processes for start-up time and peak memory")
    g.add_argument("--no-startup", dest="startup", action="store_false",
                   help="skip the fresh processes (startup_s and peak_mb are then null)")
    g.add_argument("--folder-images", type=int, default=200, metavar="N",
                   help="photos in the folder figure (default: %(default)s; 0 skips it)")
    g.add_argument("--video-frames", type=int, default=150, metavar="N",
                   help="frames of the video figures (0: skip them)")
    g.add_argument("--workers", type=int, default=2, metavar="N",
                   help="reading and detecting threads of the folder figure (predict.py --workers)")
    g.add_argument("--compare-detectors", nargs="*", default=["blazeface", "mtcnn"], metavar="NAME",
                   help="detectors timed alone and in the whole predict, each at --min-face "
                        "(default: %(default)s; none: skip)")
    g.add_argument("--no-dlib", dest="dlib", action="store_false", help="skip the dlib comparison")
    g.add_argument("--no-mediapipe", dest="mediapipe", action="store_false",
                   help="skip mediapipe's face mesh even when it is installed")
    g.add_argument("--dlib-model", default=None, metavar="FILE",
                   help="dlib's shape_predictor_68_face_landmarks.dat (default: the copy in the "
                        "face_recognition_models package)")
    g.add_argument("--dlib-upsample", type=int, default=None, metavar="N",
                   help="dlib HOG upsampling steps (0 finds faces from about 80 px, 1 from 40 px at about "
                        "4x the cost; default: the one matching --min-face)")
    g = p.add_argument_group("output")
    g.add_argument("--json", default=None, metavar="FILE", help="write the figures as JSON")
    g.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--probe", choices=("ours", "dlib"), default=None, help=argparse.SUPPRESS)
    return p


class BenchmarkError(UserError):
    """A part of the benchmark could not run."""


# -- shared by the main process and the fresh-process probes ------------------

def peak_rss_mb() -> float:
    """Peak resident set size of this process's own memory so far, MB.

    On Linux, ``VmHWM`` from ``/proc/self/status``: ``ru_maxrss`` would do
    for a process that was never forked, but Linux folds the parent's memory
    at fork time into a child's ``ru_maxrss`` across exec, so a fresh probe
    started by a 1 GB benchmark process would report at least 1 GB whatever
    it loads. Elsewhere ``ru_maxrss`` (bytes on macOS, KiB otherwise)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def benchmark_images(folder: str | None) -> list[tuple[str, "object"]]:
    """``(name, RGB uint8 array)``: the portrait, its 2x2 and 3x3 tilings,
    then the readable images of ``folder`` by name (unreadable ones reported)."""
    import numpy as np
    from matplotlib import cbook
    from common.images import IMAGE_EXTENSIONS, read_image

    rgb = read_image(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    out = [("grace_hopper", rgb), ("grace_hopper_2x2", np.tile(rgb, (2, 2, 1))),
           ("grace_hopper_3x3", np.tile(rgb, (3, 3, 1)))]
    if folder is not None:
        if not os.path.isdir(folder):
            raise ImageReadError(f"{folder}: --images needs a folder")
        for f in sorted(os.listdir(folder)):
            path = os.path.join(folder, f)
            if not f.endswith(IMAGE_EXTENSIONS) or not os.path.isfile(path):
                continue
            try:
                out.append((f, read_image(path)))
            except ImageReadError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
    return out


FOLDER_IMAGES = 200


def make_photo_folder(folder: str, n: int = FOLDER_IMAGES, seed: int = 0) -> list[str]:
    """``n`` JPEG photos made from the portrait in ``folder``: random crops
    (60-100% of each side), scales (0.5-1.5x) and mirror flips, so that
    decoding, detection and the landmark models all see varied input.
    Returns the paths, sorted."""
    import cv2
    import numpy as np
    from matplotlib import cbook
    bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    rng = np.random.default_rng(seed)
    h, w = bgr.shape[:2]
    paths = []
    for k in range(n):
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = bgr[y0:y0 + ch, x0:x0 + cw]
        s = rng.uniform(0.5, 1.5)
        img = cv2.resize(img, (max(1, round(cw * s)), max(1, round(ch * s))), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        path = os.path.join(folder, f"photo_{k:03d}.jpg")
        cv2.imwrite(path, np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def folder_figures(fl, paths: list[str], workers: int, batch_faces: int) -> dict:
    """Images/s over a folder of photos read from disk: today's per-image
    loop (``detect_landmarks(path)`` one after the other) and
    ``FaceLandmarker.iter_landmarks`` (decoding and detection in a pool of
    ``workers`` threads, faces of several images in one batch), each run
    once, alternately, twice; the better of each pair."""
    one, many, faces = [], [], 0
    for _ in range(2):
        t = time.perf_counter()
        for p in paths:
            fl.detect_landmarks(p)
        one.append(len(paths) / (time.perf_counter() - t))
        t = time.perf_counter()
        faces = sum(len(f) for _, _, _, f in fl.iter_landmarks(paths, workers, batch_faces) if isinstance(f, list))
        many.append(len(paths) / (time.perf_counter() - t))
    return {"folder_images_per_s": max(many), "folder_images_per_s_one_by_one": max(one),
            "folder": {"images": len(paths), "faces": faces, "workers": workers, "batch_faces": batch_faces,
                       "speedup": max(many) / max(one)}}


def build_landmarker(args, weights: str, eye_weights: str | None) -> tuple["object", dict]:
    """The FaceLandmarker that predict.py builds with ``args``' options (the
    PyTorch levers included: common/model_options.py's TorchLevers); returns
    it and the settings in force, with ``compile_s``, the seconds compiling
    took at load time (first batch size only; others compile in warm-up)."""
    from common.predictor import FaceLandmarker

    levers = TorchLevers.from_args(args)
    fl = FaceLandmarker(weights, eye_weights, args.device, args.detector, args.detector_model,
                        refine=args.refine, min_face=args.min_face, flip_test=args.flip_test,
                        multi_crop=args.multi_crop, levers=levers)
    compiled = [m.backend.compile_s for m in (fl.face_model, fl.eye_model) if m is not None and levers.compile]
    settings = {"refine": args.refine, "flip_test": args.flip_test, "multi_crop": args.multi_crop,
                "channels_last": levers.channels_last, "bf16": levers.bf16, "compile": levers.compile,
                "compile_s": sum(compiled) if compiled else None}
    return fl, settings


def dlib_model_path(given: str | None) -> str | None:
    """dlib's 68-point model file: ``given``, else the one inside the
    face_recognition_models package, found without importing it (its
    ``__init__`` needs setuptools' pkg_resources); None if there is none."""
    if given:
        return given if os.path.isfile(given) else None
    import importlib.util
    spec = importlib.util.find_spec("face_recognition_models")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "models", "shape_predictor_68_face_landmarks.dat")
        if os.path.isfile(path):
            return path
    return None


def dlib_available(model: str | None) -> bool:
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    return dlib_model_path(model) is not None


def float32_reference(weights: str) -> str | None:
    """The float32 checkpoint that ``weights`` came from: itself for a
    ``.pt``; for an ``.onnx`` export, its source checkpoint (named in its
    metadata) when that file lies beside it; else None."""
    if not weights.lower().endswith(".onnx"):
        return weights
    try:
        import onnx
        meta = {p.key: p.value for p in onnx.load(weights, load_external_data=False).metadata_props}
    except Exception:  # onnx not installed, or not a readable file: no reference
        return None
    source = os.path.join(os.path.dirname(os.path.abspath(weights)), meta.get("source", ""))
    return source if meta.get("source") and os.path.isfile(source) else None


def load_dlib(upsample: int, model: str | None = None):
    """``(detect_landmarks(rgb) -> list of 68-point lists, predictor, dlib)``;
    ``detect_landmarks.detect(rgb)`` runs the detector alone."""
    import cv2
    import dlib
    from common.detector import DETECT_MAX_SIDE
    from common.images import rgb_to_gray

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(dlib_model_path(model))

    def detect(rgb):
        # The same downscaled copy for detection as ours, landmarks on the full image.
        gray = rgb_to_gray(rgb)
        h, w = gray.shape
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = gray if scale == 1.0 else cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                     interpolation=cv2.INTER_AREA)
        return gray, scale, detector(small, upsample)

    def detect_landmarks(rgb):
        gray, scale, rects = detect(rgb)
        faces = []
        for r in rects:
            rect = dlib.rectangle(int(r.left() / scale), int(r.top() / scale),
                                  int(r.right() / scale), int(r.bottom() / scale))
            shape = predictor(gray, rect)
            faces.append([(p.x, p.y) for p in shape.parts()])
        return faces

    detect_landmarks.detect = detect
    return detect_landmarks, predictor, dlib


def probe(args) -> int:
    """In a fresh process: load as predict.py does, note the time, predict
    every benchmark image once, report the peak RSS (one JSON line)."""
    if args.probe == "ours":
        import torch
        if args.threads:
            import cv2
            torch.set_num_threads(args.threads)
            cv2.setNumThreads(args.threads)
        fl, _ = build_landmarker(args, args.weights, args.eye_weights if args.eyes else None)
        run = fl.detect_landmarks
    else:
        run, _, _ = load_dlib(args.dlib_upsample, args.dlib_model)
    loaded = time.time()
    for _, rgb in benchmark_images(args.images):
        run(rgb)
    print(json.dumps({"loaded_at": loaded, "peak_mb": peak_rss_mb()}))
    return 0


# -- measurement ---------------------------------------------------------------

def median_s(fn, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs, seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fresh_processes(args, kind: str, weights: str | None, eye_weights: str | None) -> dict:
    """Start-up time (median) and peak memory (median) of ``--probe kind`` runs."""
    cmd = [sys.executable, os.path.abspath(__file__), "--probe", kind, "--device", args.device,
           "--detector", args.detector, "--dlib-upsample", str(args.dlib_upsample),
           "--min-face", str(args.min_face)]
    if kind == "ours":
        eye_weights = eye_weights if args.eyes_per_image else None  # load as predict.py does
        cmd += ["--weights", weights] + (["--eye-weights", eye_weights] if eye_weights else ["--no-eyes"])
        cmd += [f for f, on in (("--channels-last", args.channels_last), ("--bf16", args.bf16),
                                ("--compile", args.compile), ("--no-refine", not args.refine),
                                ("--flip-test", args.flip_test), ("--multi-crop", args.multi_crop)) if on]
    for flag, value in (("--images", args.images), ("--threads", args.threads),
                        ("--detector-model", args.detector_model), ("--dlib-model", args.dlib_model)):
        if value is not None:
            cmd += [flag, str(value)]
    starts, peaks = [], []
    for _ in range(args.startup_repeats):
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise BenchmarkError(f"the fresh {kind} process failed: {tail}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        starts.append(res["loaded_at"] - t0)
        peaks.append(res["peak_mb"])
    return {"startup_s": statistics.median(starts), "peak_mb": statistics.median(peaks)}


def cpu_info() -> dict:
    from common.device import INT8_DOT_FLAGS, cpu_flags
    model, flags = platform.processor() or platform.machine(), cpu_flags()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.partition(":")[2].strip() for line in f
                          if line.partition(":")[0].strip() == "model name"), model)
    except OSError:
        pass
    return {"cpu": model, "logical_cpus": os.cpu_count(),
            "bf16_instructions": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}),
            "int8_instructions": sorted(flags & INT8_DOT_FLAGS),
            "flags_read": bool(flags)}


def cpu_busy_fraction(seconds: float = 1.0) -> float | None:
    """Share of all CPUs' time spent busy over ``seconds`` while this process
    sleeps, from /proc/stat: the other work on the machine right now (the
    1-minute load average lags for a minute after other work ends). None
    where /proc/stat is not readable."""
    def read():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)  # total, idle + iowait
    a = read()
    if a is None:
        return None
    time.sleep(seconds)
    b = read()
    total = b[0] - a[0] if b else 0
    return round(1 - (b[1] - a[1]) / total, 3) if total > 0 else None


def machine_info(args) -> dict:
    import cv2
    import torch
    info = cpu_info()
    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    info.update({"loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
                 "cpu_busy_before": cpu_busy_fraction(),
                 "platform": platform.platform(), "python": platform.python_version(),
                 "torch": torch.__version__, "onnxruntime": ort_version, "opencv": cv2.__version__,
                 "threads": torch.get_num_threads()})
    return info


def model_figures(lm, gray, box, repeats: int, warmup: int) -> tuple[float, float]:
    """``(ms per face at batch 1, faces/s at batch 32)`` through ``predict_boxes``."""
    one = median_s(lambda: lm.predict_boxes(gray, [box]), repeats, warmup)
    many = median_s(lambda: lm.predict_boxes(gray, [box] * BATCH), repeats, warmup)
    return one * 1000, BATCH / many


def dlib_figures(args, images, box) -> dict:
    """The dlib twins of the figures: its 68-point predictor on the same face
    box, and detection plus landmarks on the same images."""
    from common.images import rgb_to_gray
    detect_landmarks, predictor, dlib = load_dlib(args.dlib_upsample, args.dlib_model)
    gray = rgb_to_gray(images[0][1])
    rect = dlib.rectangle(*[int(round(v)) for v in box])
    one = median_s(lambda: predictor(gray, rect), args.repeats, args.warmup)
    many = median_s(lambda: [predictor(gray, rect) for _ in range(BATCH)], args.repeats, args.warmup)
    out = {"dlib_ms_per_face_batch1": one * 1000, "dlib_faces_per_s_batch32": BATCH / many,
           "dlib_ms_per_image": {}, "dlib_faces_per_image": {}, "dlib_detect_ms_per_image": {}}
    for name, rgb in images:
        out["dlib_ms_per_image"][name] = median_s(lambda: detect_landmarks(rgb), args.repeats, args.warmup) * 1000
        out["dlib_detect_ms_per_image"][name] = median_s(lambda: detect_landmarks.detect(rgb), args.repeats,
                                                         args.warmup) * 1000
        out["dlib_faces_per_image"][name] = len(detect_landmarks(rgb))
    out["dlib_version"] = getattr(dlib, "__version__", None)
    return out


def detector_figures(fl, names: list[str], images, min_face: float, repeats: int, warmup: int) -> dict:
    """Each detector of ``names`` at ``min_face``: ms per image of its
    ``detect`` alone and of the whole per-image predict of ``fl`` with it
    instead of ``fl``'s own detector, and the faces it finds."""
    from common.detector import make_detector
    out = {}
    for det_name in names:
        other = copy.copy(fl)
        other.detector = make_detector(det_name, None, min_face)
        fig = {"ms_per_image_detect": {}, "ms_per_image": {}, "faces_per_image": {}}
        for name, rgb in images:
            fig["ms_per_image_detect"][name] = median_s(lambda: other.detector.detect(rgb), repeats, warmup) * 1000
            fig["ms_per_image"][name] = median_s(lambda: other.detect_landmarks(rgb), repeats, warmup) * 1000
            fig["faces_per_image"][name] = len(other.detect_landmarks(rgb))
        out[det_name] = fig
    return out


def video_frames(n: int) -> list:
    """``n`` BGR frames of 640 x 480: the portrait at half size panning
    smoothly left and right (one face throughout)."""
    import cv2
    import numpy as np
    from matplotlib import cbook
    bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    bgr = cv2.resize(bgr, None, fx=0.6, fy=0.6)
    frames = []
    for i in range(n):
        dx = 320 - bgr.shape[1] / 2 + 150 * np.sin(2 * np.pi * i / max(n, 1))
        m = np.float32([[1, 0, dx], [0, 1, 240 - bgr.shape[0] / 2]])
        frames.append(cv2.warpAffine(bgr, m, (640, 480), borderMode=cv2.BORDER_REPLICATE))
    return frames


def video_figures(fl, frames: list) -> dict:
    """Frames/s of one face at 640 x 480, tracking and detecting every frame
    (each mode twice, alternately; the better run), and mediapipe's face
    mesh in video mode when it is importable."""
    from common.tracking import FaceTracker
    from common.video import VideoLandmarker
    rates = {True: [], False: []}
    for _ in range(2):
        for track in (True, False):
            stream = VideoLandmarker(fl, FaceTracker(), track=track)
            t = time.perf_counter()
            for f in frames:
                stream.process(f, colour="bgr")
            rates[track].append(len(frames) / (time.perf_counter() - t))
    out = {"video_fps_tracking": max(rates[True]), "video_fps_detect_every_frame": max(rates[False]),
           "video_fps_mediapipe": None}
    try:
        import cv2
        import mediapipe as mp
        mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1)
        rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
        t = time.perf_counter()
        for f in rgb:
            mesh.process(f)
        out["video_fps_mediapipe"] = len(frames) / (time.perf_counter() - t)
    except Exception:  # not installed, or unusable here: the note comes from mediapipe_figures
        pass
    return out


def mediapipe_figures(images, repeats: int, warmup: int) -> dict:
    """mediapipe's face mesh (static image mode, up to 10 faces) on the
    per-image images: ms per image and faces found; ``available`` False with
    a note when mediapipe cannot be imported or run."""
    try:
        import mediapipe as mp
        mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=10)
    except Exception as exc:  # ImportError, or a wheel without its model / a clashing protobuf
        return {"available": False, "version": None,
                "note": f"skipped: mediapipe not usable ({exc.__class__.__name__}; pip install mediapipe==0.10.21)"}
    out = {"available": True, "version": getattr(mp, "__version__", None), "note": None,
           "ms_per_image": {}, "faces_per_image": {}}
    for name, rgb in images:
        out["ms_per_image"][name] = median_s(lambda: mesh.process(rgb), repeats, warmup) * 1000
        out["faces_per_image"][name] = len(mesh.process(rgb).multi_face_landmarks or [])
    mesh.close()
    return out


# -- report --------------------------------------------------------------------

def _fmt(v, digits=1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def print_table(doc: dict) -> None:
    m, s = doc["machine"], doc["settings"]
    levers = [k for k in ("flip_test", "multi_crop", "channels_last", "bf16", "compile") if s.get(k)]
    int8 = ("flags not read" if not m["flags_read"] else
            ", ".join(m.get("int8_instructions") or []) or "none (no VNNI)")
    print(f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, int8 instructions: {int8}, "
          f"load {m['loadavg_1min']}, torch {m['torch']}, threads: {s['threads']}")
    print(f"backend: {s['backend']}{' int8' if s.get('quantization') else ''}, levers: {', '.join(levers) or 'none'}, "
          f"device: {s['device']}, detector: {s['detector']} from {s['min_face']:.0f} px "
          f"(dlib: upsample {s['dlib_upsample']}), per image: face model"
          f"{' + eye model' if s['eyes_per_image'] else ''}{' with refine' if s['refine'] else ''}, "
          f"median of {s['repeats']} after {s['warmup']} warm-up")
    dlib = doc["dlib_ms_per_face_batch1"] is not None
    rows = []
    for task, info in doc["models"].items():
        if info is None:
            continue
        what = f"{task} model ({info['points']} pts, {info['head']}, {info['input_size']} px)"
        d1 = doc["dlib_ms_per_face_batch1"] if task == "face" else None
        d32 = doc["dlib_faces_per_s_batch32"] if task == "face" else None
        rows.append((f"{what}: ms/face, batch 1", doc["ms_per_face_batch1"][task], d1, 2))
        rows.append((f"{what}: faces/s, batch {BATCH}", doc["faces_per_s_batch32"][task], d32, 0))
    for name, ms in doc["ms_per_image"].items():
        h, w = doc["images"][name]["height"], doc["images"][name]["width"]
        n = doc["faces_per_image"][name]
        dn = doc["dlib_faces_per_image"][name] if dlib else None
        faces = f"{n}" + (f"/{dn}" if dn is not None else "")
        rows.append((f"predict {name} ({w}x{h}, faces {faces}): ms/image", ms,
                     doc["dlib_ms_per_image"][name] if dlib else None, 1))
    for det_name, fig in (doc.get("detectors") or {}).items():
        for name, ms in fig["ms_per_image_detect"].items():
            rows.append((f"{det_name} alone, {name} (faces {fig['faces_per_image'][name]}): ms/image "
                         "(dlib: its HOG detector)", ms, doc["dlib_detect_ms_per_image"][name] if dlib else None, 1))
            rows.append((f"predict {name} with {det_name}: ms/image", fig["ms_per_image"][name],
                         doc["dlib_ms_per_image"][name] if dlib else None, 1))
    for task, diff in doc["max_diff_px_vs_float32"].items():
        if diff is not None:
            rows.append((f"{task} model: largest point shift vs plain float32 torch, px", diff, None, 3))
    if doc.get("folder_images_per_s") is not None:
        f = doc["folder"]
        rows.append((f"folder of {f['images']} photos, {f['workers']} workers, batches of faces: images/s",
                     doc["folder_images_per_s"], None, 1))
        rows.append((f"folder of {f['images']} photos, one by one: images/s", doc["folder_images_per_s_one_by_one"],
                     None, 1))
    mp = doc.get("mediapipe") or {}
    if doc.get("video_fps_tracking") is not None:
        rows.append(("video 640x480, one face, tracking: frames/s", doc["video_fps_tracking"], None, 1))
        rows.append(("video, detecting every frame: frames/s", doc["video_fps_detect_every_frame"], None, 1))
        if doc.get("video_fps_mediapipe") is not None:
            rows.append(("video, mediapipe face mesh: frames/s", doc["video_fps_mediapipe"], None, 1))
    for name, ms in (mp.get("ms_per_image") or {}).items():
        rows.append((f"mediapipe face mesh {name} (faces {mp['faces_per_image'][name]}): ms/image, "
                     f"ours/mediapipe {_fmt(ratio(doc['ms_per_image'][name], ms), 2)}", ms, None, 1))
    rows.append(("start-up: s", doc["startup_s"], doc["dlib_startup_s"], 2))
    rows.append(("peak memory: MB", doc["peak_mb"], doc["dlib_peak_mb"], 0))
    width = max(len(r[0]) for r in rows)
    print(f"{'':<{width}}  {'ours':>9}" + (f"  {'dlib':>9}  {'ours/dlib':>9}" if dlib else ""))
    for label, ours, theirs, digits in rows:
        line = f"{label:<{width}}  {_fmt(ours, digits):>9}"
        if dlib:
            line += f"  {_fmt(theirs, digits):>9}  {_fmt(ratio(ours, theirs), 2):>9}"
        print(line)


def write_json(path: str, doc: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def main(args: argparse.Namespace) -> int:
    if args.repeats < 1 or args.warmup < 0 or args.startup_repeats < 1:
        raise InputError("--repeats and --startup-repeats must be at least 1, --warmup at least 0")
    if args.folder_images < 0 or args.video_frames < 0 or args.workers < 0:
        raise InputError("--folder-images, --video-frames and --workers must be 0 or more")
    if args.threads is not None and args.threads < 1:
        raise InputError("--threads must be at least 1")
    if args.min_face is None:
        from common.detector import MIN_FACE
        args.min_face = MIN_FACE
    if args.min_face <= 0:
        raise InputError("--min-face must be positive")
    if args.dlib_upsample is None:  # dlib's HOG window is 80 px; each upsampling step halves it
        args.dlib_upsample = max(0, round(math.log2(80 / args.min_face)))
    if args.dlib_model and not os.path.isfile(args.dlib_model):
        raise InputError(f"{args.dlib_model}: dlib model file not found")
    if args.json and os.path.exists(args.json) and not args.force:
        raise InputError(f"{args.json}: already exists (use --force to overwrite)")
    if args.probe:
        return probe(args)

    import cv2
    import numpy as np
    import torch
    from common.images import rgb_to_gray
    from common.device import native_bf16, select_device
    from common.landmark_model import LandmarkModel
    from common.model_options import pick_weights

    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    device = select_device(args.device)
    levers = TorchLevers.from_args(args)
    if levers.names and args.backend == "onnx":
        raise InputError(f"{', '.join(levers.names)}: levers of the PyTorch back end, not of --backend onnx")
    pt_only = bool(levers.names) or args.backend == "torch"
    weights = pick_weights(args.weights, "face", device, pt_only=pt_only)
    eye_weights = pick_weights(args.eye_weights, "eyes", device, "--eye-weights", pt_only) if args.eyes else None
    onnx_given = any(w and w.lower().endswith(".onnx") for w in (weights, eye_weights))
    if args.backend == "torch" and onnx_given:
        raise InputError("--backend torch needs .pt weights")
    if eye_weights and not os.path.isfile(eye_weights):
        if args.eye_weights:
            raise InputError(f"{eye_weights}: checkpoint not found")
        print(f"eye model left out: {eye_weights} not found (give --eye-weights, or --no-eyes)")
        eye_weights = None
    machine = machine_info(args)
    share, load, cpus = machine["cpu_busy_before"], machine["loadavg_1min"], machine["logical_cpus"] or 1
    if share is not None:  # /proc/stat: what other work did just now
        busy, why = share > 0.25, f"other work used {100 * share:.0f}% of the CPUs in the second before timing"
    else:  # the 1-minute load average lags, but is all some platforms have
        busy, why = load is not None and load > 0.5 * cpus, f"load average {load} on {cpus} CPUs"
    if busy:
        print(f"note: {why}, so these timings are not representative")
    if args.bf16 and machine["flags_read"] and not native_bf16(set(machine["bf16_instructions"])):
        print("note: this CPU has no avx512_bf16/amx_bf16 instructions: bfloat16 is emulated, "
              "probably slower than float32")

    tmpdir = None
    given = {weights: weights, eye_weights: eye_weights}  # weights used -> as given (before an export)
    plain = {w: float32_reference(w) for w in (weights, eye_weights) if w}  # -> float32 checkpoint, if any
    try:
        if args.backend == "onnx":
            from common.export import export_onnx
            to_export = [w for w in (weights, eye_weights) if w and not w.lower().endswith(".onnx")]
            if to_export:
                tmpdir = tempfile.TemporaryDirectory(prefix="bench-onnx-")
                import warnings
                for w in to_export:
                    out = os.path.join(tmpdir.name, os.path.splitext(os.path.basename(w))[0] + ".onnx")
                    print(f"exporting {w} to ONNX (temporary; inference/export_onnx.py keeps one)")
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        export_onnx(w, out)
                    given[out] = f"{w} (exported to a temporary ONNX file)"
                    plain[out] = w
                    weights = out if w == weights else weights
                    eye_weights = out if w == eye_weights else eye_weights

        fl, settings = build_landmarker(args, weights, eye_weights)
        images = benchmark_images(args.images)
        gray = rgb_to_gray(images[0][1])
        dets = fl.detector.detect(images[0][1])
        if dets:
            box, box_source = dets[0].face_box, "detector"
        else:  # no face found: a central box, so the model figures still exist
            h, w = gray.shape
            side = 0.5 * min(h, w)
            box, box_source = np.array([w / 2 - side / 2, h / 2 - side / 2, w / 2 + side / 2,
                                        h / 2 + side / 2], np.float32), "centre"

        backend = "onnx" if weights.lower().endswith(".onnx") else "torch"
        doc = {"format": FORMAT, "version": VERSION, "machine": machine, "busy": bool(busy),
               "settings": {"backend": backend, "threads": torch.get_num_threads(), "device": str(device),
                            "quantization": (fl.face_model.description.get("quantization") or {}).get("method"),
                            "min_face": args.min_face, "eyes_per_image": bool(args.eyes_per_image and eye_weights),
                            **settings, "repeats": args.repeats, "warmup": args.warmup,
                            "startup_repeats": args.startup_repeats if args.startup else 0,
                            "detector": args.detector, "dlib_upsample": args.dlib_upsample,
                            # MTCNN's networks: "onnx" (ONNX Runtime) or "torch" (no onnxruntime, or
                            # the in-memory export failed, e.g. a protobuf too old for the onnx package)
                            "detector_backend": getattr(getattr(fl.detector, "net", None), "backend", None),
                            "face_box": [round(float(v), 1) for v in box], "face_box_source": box_source},
               "models": {}, "input_size": {}, "head": {},
               "ms_per_face_batch1": {}, "faces_per_s_batch32": {}, "max_diff_px_vs_float32": {}}
        levered = bool(levers.names)
        for task, lm, path in (("face", fl.face_model, weights), ("eyes", fl.eye_model, eye_weights)):
            if lm is None:
                doc["models"][task] = None
                continue
            head = lm.description["head"]
            doc["models"][task] = {"weights": given[path], "points": len(lm.indices),
                                   "head": head, "input_size": lm.input_size, "epoch": lm.epoch}
            doc["input_size"][task], doc["head"][task] = lm.input_size, head
            ms, fps = model_figures(lm, gray, box, args.repeats, args.warmup)
            doc["max_diff_px_vs_float32"][task] = None
            if plain[path] and (plain[path] != path or levered):
                ref = LandmarkModel(plain[path], task, fl.device)
                doc["max_diff_px_vs_float32"][task] = float(np.abs(  # one plain crop each: the file's own change
                    lm.predict_boxes(gray, [box], flip=False, multi=False) - ref.predict_boxes(gray, [box])).max())
                del ref
            doc["ms_per_face_batch1"][task], doc["faces_per_s_batch32"][task] = ms, fps

        doc["images"], doc["ms_per_image"], doc["faces_per_image"] = {}, {}, {}
        per_image = fl
        if not args.eyes_per_image:  # as predict.py runs without --eyes
            per_image = copy.copy(fl)
            per_image.eye_model = None
        for name, rgb in images:
            doc["images"][name] = {"height": int(rgb.shape[0]), "width": int(rgb.shape[1])}
            doc["ms_per_image"][name] = median_s(lambda: per_image.detect_landmarks(rgb), args.repeats,
                                                 args.warmup) * 1000
            doc["faces_per_image"][name] = len(per_image.detect_landmarks(rgb))
        doc["detectors"] = detector_figures(per_image, args.compare_detectors, images, args.min_face,
                                            args.repeats, args.warmup)
        doc["folder_images_per_s"] = doc["folder_images_per_s_one_by_one"] = doc["folder"] = None
        if args.folder_images:
            with tempfile.TemporaryDirectory(prefix="bench-folder-") as folder:
                doc.update(folder_figures(per_image, make_photo_folder(folder, args.folder_images),
                                          args.workers, 16))
        doc.update(video_figures(per_image, video_frames(args.video_frames)) if args.video_frames else
                   {"video_fps_tracking": None, "video_fps_detect_every_frame": None, "video_fps_mediapipe": None})
        doc["mediapipe"] = (mediapipe_figures(images, args.repeats, args.warmup) if args.mediapipe else
                            {"available": False, "version": None, "note": "skipped (--no-mediapipe)"})
        if not doc["mediapipe"]["available"] and args.mediapipe:
            print(f"mediapipe comparison {doc['mediapipe']['note']}")
        ours = fresh_processes(args, "ours", weights, eye_weights) if args.startup else {}
        doc["startup_s"], doc["peak_mb"] = ours.get("startup_s"), ours.get("peak_mb")

        dlib_keys = ("dlib_ms_per_face_batch1", "dlib_faces_per_s_batch32", "dlib_ms_per_image",
                     "dlib_faces_per_image", "dlib_detect_ms_per_image", "dlib_startup_s", "dlib_peak_mb")
        doc.update({k: None for k in dlib_keys})
        doc["dlib"] = {"available": False, "note": None, "upsample": args.dlib_upsample, "version": None}
        if not args.dlib:
            doc["dlib"]["note"] = "skipped (--no-dlib)"
        else:
            if not dlib_available(args.dlib_model):
                print(DLIB_HINT)
                doc["dlib"]["note"] = DLIB_HINT
            else:
                d = dlib_figures(args, images, box)
                doc["dlib"].update(available=True, version=d.pop("dlib_version"))
                doc.update(d)
                if args.startup:
                    theirs = fresh_processes(args, "dlib", None, None)
                    doc["dlib_startup_s"], doc["dlib_peak_mb"] = theirs["startup_s"], theirs["peak_mb"]
        doc["ratio_ours_over_dlib"] = None if not doc["dlib"]["available"] else {
            "ms_per_face_batch1": ratio(doc["ms_per_face_batch1"]["face"], doc["dlib_ms_per_face_batch1"]),
            "faces_per_s_batch32": ratio(doc["faces_per_s_batch32"]["face"], doc["dlib_faces_per_s_batch32"]),
            "ms_per_image": {k: ratio(v, doc["dlib_ms_per_image"][k]) for k, v in doc["ms_per_image"].items()},
            "startup_s": ratio(doc["startup_s"], doc["dlib_startup_s"]),
            "peak_mb": ratio(doc["peak_mb"], doc["dlib_peak_mb"])}
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()

    print_table(doc)
    if args.json:
        write_json(args.json, doc)
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
