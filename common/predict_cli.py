"""Command line of ``inference/predict.py``: find every face in photos, videos
or a camera stream, put 68 landmarks on each, draw them and write JSON.

``get_args_parser()`` returns the parser and ``main(args)`` does the work and
returns the exit code, so a thin script can change defaults with
``parser.set_defaults(...)``. Heavy modules (torch, cv2, matplotlib) are
imported inside ``main`` so that ``--help`` is instant; matplotlib only with
``--show``.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import time

from .detector import add_detector_arguments
from .errors import InputError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Extensions cv2.imwrite can write; other inputs get a .jpg output.
_WRITABLE = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
OUTPUT_SUFFIX = "_landmarks"
JSON_FORMAT, JSON_VERSION = "face-landmarks", 1

EXIT_OK, EXIT_PARTIAL, EXIT_FAILED = 0, 1, 2

EPILOG = """\
inputs: image files, folders (their images and videos, not recursive) and
globs ("photos/*.jpg", quoted so that the shell leaves them alone). Videos
are recognised by extension (.mp4 .avi .mov .mkv .webm).

outputs: an annotated copy beside each input (pic.jpg -> pic_landmarks.jpg,
clip.mp4 -> clip_landmarks.mp4), or in --output DIR. Existing files are never
overwritten without --force, and an input is never overwritten.

video and camera: points are smoothed over time with a One Euro filter
(--smooth, the default for video; stills are never smoothed). Faces are
followed across frames by box overlap, each with its own filter. With --eyes
a blink is counted when the mean eye aspect ratio (EAR) of a face stays below
--ear-threshold for at least --blink-frames consecutive frames.

exit codes:
  0  every input was processed (images without faces included: they are
     reported and have an empty face list in the JSON)
  1  some inputs failed (one "error: <path>: <reason>" line each on stderr),
     at least one was processed
  2  nothing could be processed, or bad arguments, or a bad checkpoint
     (missing, corrupt, or for the wrong task), or the device is unavailable

examples:
  python inference/predict.py pic.jpg
  python inference/predict.py photos/ "more/*.png" --output out --json out/landmarks.json
  python inference/predict.py pic.jpg --eyes --lines --show --no-save
  python inference/predict.py clip.mp4 --eyes --json clip.json
  python inference/predict.py --camera 0 --eyes --show --max-frames 300
"""


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="predict.py",
        description="Find every face in images, videos or a camera stream, put 68 landmarks on "
                    "each (optionally the 12 eye points and eye aspect ratios) and draw them.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image or video files, folders, or globs")
    p.add_argument("--camera", type=int, default=None, metavar="INDEX",
                   help="read from this camera (e.g. 0) instead of files")
    g = p.add_argument_group("models")
    g.add_argument("--weights", default=None, metavar="PT",
                   help="face checkpoint (task 'face'), or its ONNX export (.onnx, from "
                        "inference/export_onnx.py; needs onnxruntime); default: the shipped model for the "
                        "device (common/landmark_model.py's default_weights; the choice is printed). "
                        "weights/face192.int8.onnx: the 192 px model on a CPU, more "
                        "accurate (3.51%% instead of 3.69%% NME with detector boxes and refine) for up to twice "
                        "the network time")
    g.add_argument("--eyes", action="store_true",
                   help="also run the eye model: 12 eye points (iBUG 36-47) and each eye's aspect ratio")
    g.add_argument("--eye-weights", default=None, metavar="PT",
                   help="eye checkpoint (task 'eyes') or its .onnx export; default: as for --weights")
    g.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                   help="second pass on the crop given by the first prediction (default: on; it lowers "
                        "the error with detector boxes from 3.76%% to 3.69%% NME, see weights/README.md; "
                        "--no-refine halves the network time)")
    g.add_argument("--flip-test", action="store_true",
                   help="also predict on the mirrored crop and average (with refine only the final pass is "
                        "mirrored: 1.5x the network time); keeps the annotation offset the checkpoint records. "
                        "Shipped face model: 3.69%% -> 3.65%% NME with detector boxes and refine "
                        "(weights/README.md)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda; asking for an absent GPU is an error")
    add_detector_arguments(g)
    g = p.add_argument_group("output")
    g.add_argument("--output", "-o", default=None, metavar="DIR",
                   help="write annotated copies here instead of beside the inputs")
    g.add_argument("--force", action="store_true", help="overwrite existing outputs (never inputs)")
    g.add_argument("--no-save", dest="save", action="store_false", help="do not write annotated images/videos")
    g.add_argument("--show", action="store_true",
                   help="show results in a matplotlib window (with --no-save: only show them)")
    g.add_argument("--lines", action="store_true", help="join the points of each region with lines")
    g.add_argument("--no-boxes", dest="boxes", action="store_false", help="do not draw the face boxes")
    g.add_argument("--json", default=None, metavar="FILE",
                   help="write boxes, scores, points (and eye points, EARs) as JSON; '-' for stdout")
    g = p.add_argument_group("video and camera")
    g.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                   help="One Euro smoothing of points over time (video and camera only)")
    g.add_argument("--ear-threshold", type=float, default=0.21, metavar="EAR",
                   help="with --eyes: eyes count as closed while the mean eye aspect ratio of "
                        "both eyes is below this (default: %(default)s)")
    g.add_argument("--blink-frames", type=int, default=2, metavar="N",
                   help="with --eyes: a blink needs at least N consecutive closed frames "
                        "(default: %(default)s)")
    g.add_argument("--max-frames", type=int, default=0, metavar="N",
                   help="stop a video or the camera after N frames (0: no limit)")
    return p


def _is_video(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def _is_output_name(path: str) -> bool:
    return os.path.splitext(os.path.basename(path))[0].endswith(OUTPUT_SUFFIX)


def expand_inputs(specs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files to process, and ``(spec, reason)`` for specs that give none. Folders and globs yield images and videos sorted by name,
    leaving out earlier outputs (``*_landmarks.*``); a file named explicitly
    is taken as it is (reading it says whether it is an image)."""
    files, errors, seen = [], [], set()

    def add(path):
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    def wanted(path):
        ext = os.path.splitext(path)[1].lower()
        return (os.path.isfile(path) and ext in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
                and not _is_output_name(path))

    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(os.path.join(spec, f) for f in os.listdir(spec))
            found = [f for f in found if wanted(f)]
            if not found:
                errors.append((spec, "folder holds no images or videos"))
            for f in found:
                add(f)
        elif os.path.exists(spec):
            add(spec)
        elif glob.has_magic(spec):
            found = [f for f in sorted(glob.glob(spec, recursive=True)) if wanted(f)]
            if not found:
                errors.append((spec, "no image or video matches this pattern"))
            for f in found:
                add(f)
        else:
            errors.append((spec, "no such file"))
    return files, errors


def output_path(src: str, out_dir: str | None, video: bool = False) -> str:
    """``<dir>/<name>_landmarks<ext>``: beside ``src`` or in ``out_dir``;
    videos become .mp4, images keep a writable extension (else .jpg)."""
    base, ext = os.path.splitext(os.path.basename(src))
    ext = ".mp4" if video else (ext if ext.lower() in _WRITABLE else ".jpg")
    folder = out_dir if out_dir is not None else os.path.dirname(src)
    return os.path.join(folder, base + OUTPUT_SUFFIX + ext)


class OutputGuard:
    """Refuses to overwrite inputs, outputs of this run, and (without
    ``force``) existing files."""

    def __init__(self, inputs: list[str], force: bool):
        self.inputs = {os.path.abspath(p) for p in inputs}
        self.written: dict[str, str] = {}
        self.force = force

    def check(self, src: str, out: str) -> None:
        key = os.path.abspath(out)
        if key in self.inputs:
            raise InputError(f"{src}: output {out} would overwrite an input")
        if key in self.written:
            raise InputError(f"{src}: output {out} would overwrite the output of {self.written[key]} "
                             "from this run (use --output to separate them)")
        if os.path.exists(out) and not self.force:
            raise InputError(f"{src}: output {out} already exists (use --force to overwrite)")

    def claim(self, src: str, out: str) -> None:
        self.written[os.path.abspath(out)] = src


class Runner:
    """Processes inputs one by one with one :class:`FaceLandmarker`."""

    def __init__(self, args, landmarker, log):
        self.args, self.fl, self.log = args, landmarker, log
        self.images: list[dict] = []
        self.videos: list[dict] = []
        self.guard = OutputGuard(args.inputs, args.force)
        if args.output:
            os.makedirs(args.output, exist_ok=True)

    def say(self, msg: str) -> None:
        print(msg, file=self.log, flush=True)

    # -- stills ------------------------------------------------------------
    def image(self, path: str) -> None:
        import cv2
        from .drawing import draw_faces, face_label, show_image
        from .predictor import face_to_dict, prepare_image

        a = self.args
        out = output_path(path, a.output) if a.save else None
        if out:
            self.guard.check(path, out)
        t0 = time.time()
        rgb, gray = prepare_image(path)
        faces = self.fl.landmarks_for_detections(gray, self.fl.detector.detect(rgb))
        del gray  # full-size copies are costly on very large photos
        ms = (time.time() - t0) * 1000
        h, w = rgb.shape[:2]
        if out or a.show:
            # Draw on the image itself when it is ours to change: no full-size copy.
            canvas = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR, dst=rgb if rgb.flags.writeable else None)
            del rgb
            labels = [face_label(f) for f in faces] if a.eyes else None
            draw_faces(canvas, faces, "bgr", lines=a.lines, boxes=a.boxes, labels=labels)
            if out:
                try:
                    ok = cv2.imwrite(out, canvas)
                except cv2.error:
                    ok = False
                if not ok:
                    raise InputError(f"{path}: could not write {out}")
                self.guard.claim(path, out)
        n = len(faces)
        what = f"{n} face{'s' if n != 1 else ''}" if n else "no face found"
        self.say(f"{path}: {what}" + (f" -> {out}" if out else "") + f" ({ms:.0f} ms)")
        self.images.append({"path": path, "width": w, "height": h, "output": out,
                            "faces": [face_to_dict(f) for f in faces]})
        if a.show:
            show_image(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB, dst=canvas), f"{path}: {what}")

    # -- video and camera ---------------------------------------------------
    def video(self, source, name: str) -> None:
        """``source``: a file path or a camera index; ``name``: for messages."""
        import cv2
        import numpy as np
        from .drawing import FrameViewer, draw_faces, face_label
        from .predictor import eye_ratios, face_to_dict
        from .tracking import FaceTracker

        a = self.args
        camera = not isinstance(source, str)
        if a.save:
            out = (os.path.join(a.output or ".", f"camera{source}{OUTPUT_SUFFIX}.mp4") if camera
                   else output_path(source, a.output, video=True))
            self.guard.check(name, out)
        else:
            out = None
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise InputError(f"{name}: cannot open {'camera' if camera else 'video'}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps < 1000 else 30.0
        tracker = FaceTracker(smooth=a.smooth, ear_threshold=a.ear_threshold, blink_frames=a.blink_frames)
        writer = viewer = None
        frames: list[dict] = []
        t_start, t_log, size = time.time(), time.time(), None
        try:
            while not a.max_frames or len(frames) < a.max_frames:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                i = len(frames)
                t = (time.time() - t_start) if camera else i / fps
                if size is None:
                    size = frame.shape[1], frame.shape[0]
                    if out:
                        writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                        if not writer.isOpened():
                            raise InputError(f"{name}: could not open {out} for writing")
                        self.guard.claim(name, out)
                    if a.show:
                        viewer = FrameViewer(name)
                faces = self.fl.detect_landmarks(frame, colour="bgr")
                tracks = tracker.match([f.box for f in faces])
                blink_counts = []
                for f, tr in zip(faces, tracks):
                    side = float(max(f.face_box[2] - f.face_box[0], f.face_box[3] - f.face_box[1]))
                    f.points = tracker.filter(tr, "points", f.points, t, side)
                    if f.eye_points is not None:
                        # Blinks are counted on the raw ratios: smoothing would flatten them.
                        tr.blinks.update(float(np.mean(list(f.ears.values()))))
                        f.eye_points = tracker.filter(tr, "eyes", f.eye_points, t, side)
                        f.ears = eye_ratios(f.eye_points)
                        blink_counts.append(tr.blinks.count)
                    else:
                        blink_counts.append(None)
                frames.append({"index": i, "time": round(t, 4),
                               "faces": [face_to_dict(f, tr.id, blinks=b)
                                         for f, tr, b in zip(faces, tracks, blink_counts)]})
                if writer is not None or viewer is not None:
                    labels = [face_label(f, b, tr.id) for f, tr, b in zip(faces, tracks, blink_counts)]
                    draw_faces(frame, faces, "bgr", lines=a.lines, boxes=a.boxes, labels=labels)
                    if writer is not None:
                        writer.write(frame)
                    if viewer is not None and not viewer.update(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)):
                        break
                if time.time() - t_log > 5:
                    t_log = time.time()
                    print(f"{name}: frame {i + 1} ({(i + 1) / (t_log - t_start):.1f} frames/s)",
                          file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            if not camera:
                raise
            # Ctrl-C is the way to stop a camera without a window: keep what we have.
        finally:
            cap.release()
            if writer is not None:
                writer.release()
            if viewer is not None:
                viewer.close()
        if not frames:
            raise InputError(f"{name}: no frame could be read (not a video, or damaged)")
        n_faces = sum(len(f["faces"]) for f in frames)
        elapsed = time.time() - t_start
        blinks = tracker.total_blinks if a.eyes else None
        msg = (f"{name}: {len(frames)} frames, {n_faces} faces, {len(tracker.counters)} tracked"
               + (f", blinks {sum(blinks.values())}" if blinks else "")
               + (f" -> {out}" if out else "") + f" ({len(frames) / max(elapsed, 1e-9):.1f} frames/s)")
        self.say(msg)
        self.videos.append({"path": name, "width": size[0], "height": size[1], "fps": round(fps, 3),
                            "output": out, "smoothed": bool(a.smooth),
                            "blinks": {str(k): v for k, v in blinks.items()} if blinks is not None else None,
                            "frames": frames})


def json_document(args, runner: Runner | None, errors: list[dict]) -> dict:
    """The whole JSON output (see README.md, section JSON, for the shape)."""
    return {"format": JSON_FORMAT, "version": JSON_VERSION,
            "weights": args.weights, "eye_weights": args.eye_weights if args.eyes else None,
            "refine": bool(args.refine), "flip_test": bool(args.flip_test),
            "images": runner.images if runner else [], "videos": runner.videos if runner else [],
            "errors": errors}


_NUMBER_LIST = re.compile(r"\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]")


def dumps_json(doc: dict) -> str:
    """Indented JSON with every list of plain numbers (a box, an ``[x, y]``
    pair) kept on one line."""
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]",
                            json.dumps(doc, indent=1))


def _write_json(path: str, doc: dict) -> None:
    text = dumps_json(doc) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _short(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return rel if len(rel) < len(path) else path


def main(args: argparse.Namespace) -> int:
    """Process every input; returns the exit code (see the parser's epilog)."""
    def fail(msg: str) -> None:
        print(f"error: {msg}", file=sys.stderr, flush=True)

    if not args.inputs and args.camera is None:
        fail("no input: give image or video files, folders or globs, or --camera INDEX")
        return EXIT_FAILED
    if not args.save and not args.show and not args.json:
        fail("nothing to do: --no-save without --show or --json")
        return EXIT_FAILED
    if args.blink_frames < 1:
        fail("--blink-frames must be at least 1")
        return EXIT_FAILED
    if args.json and args.json != "-":
        if os.path.isdir(args.json):
            fail(f"{args.json}: --json needs a file name, this is a folder")
            return EXIT_FAILED
        if os.path.exists(args.json) and not args.force:
            fail(f"{args.json}: already exists (use --force to overwrite)")
            return EXIT_FAILED
    log = sys.stderr if args.json == "-" else sys.stdout

    files, errors = expand_inputs(args.inputs)
    err_list = [{"path": path, "error": reason} for path, reason in errors]
    for path, reason in errors:
        fail(f"{path}: {reason}")
    if not files and args.camera is None:
        return EXIT_FAILED

    t0 = time.time()
    # OpenCV and its FFmpeg backend print their own lines about unreadable
    # videos and absent cameras; ours are enough (set these to see theirs).
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    # Heavy imports only now: --help and argument errors stay instant.
    from .errors import CheckpointError, DetectorError, DeviceError, ImageReadError
    from .predictor import FaceLandmarker

    try:
        fl = FaceLandmarker(args.weights, (args.eye_weights or "default") if args.eyes else None, args.device,
                            args.detector, args.detector_model, refine=args.refine, flip_test=args.flip_test,
                            min_face=args.min_face)
    except (CheckpointError, DeviceError, DetectorError) as exc:
        fail(str(exc))
        return EXIT_FAILED
    args.weights, args.eye_weights = fl.weights, fl.eye_weights
    for line in fl.choice_lines():
        print(line, file=sys.stderr, flush=True)
    print(f"loaded {_short(args.weights)}" + (f" and {_short(args.eye_weights)}" if args.eyes else "")
          + f" on {fl.device} in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)

    import cv2
    try:
        runner = Runner(args, fl, log)
    except OSError as exc:
        fail(f"{args.output}: cannot create the output folder ({exc.strerror or exc})")
        return EXIT_FAILED
    processed = 0
    failed = len(errors)
    jobs = [("camera", args.camera)] if args.camera is not None else []
    jobs += [("video" if _is_video(f) else "image", f) for f in files]
    try:
        for kind, src in jobs:
            name = f"camera {src}" if kind == "camera" else src
            try:
                if kind == "image":
                    runner.image(src)
                else:
                    runner.video(src, name)
                processed += 1
            except (InputError, ImageReadError, ValueError, OSError, cv2.error) as exc:
                failed += 1
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                if not msg.startswith(str(name)):
                    msg = f"{name}: {msg}"
                fail(msg)
                err_list.append({"path": str(name), "error": msg[len(str(name)) + 2:]})
            except MemoryError:
                failed += 1
                fail(f"{name}: out of memory")
                err_list.append({"path": str(name), "error": "out of memory"})
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        if args.json:
            _write_json(args.json, json_document(args, runner, err_list))
        return 130
    if args.json:
        _write_json(args.json, json_document(args, runner, err_list))
        if args.json != "-":
            print(f"JSON written to {args.json}", file=log)
    if processed == 0:
        return EXIT_FAILED
    return EXIT_PARTIAL if failed else EXIT_OK
