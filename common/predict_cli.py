"""Command line of ``inference/predict.py``: find every face in photos, videos
or a camera stream, put the face model's landmarks on each (68 for the
shipped models; any scheme a model was trained on), draw them and write JSON.

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
from .errors import InputError, OutputError
from .outputs import OutputBusyError, OutputGuard, StagedFile, is_device, write_atomically
from .model_options import TorchLevers, add_device_argument, add_lever_arguments, add_weights_argument

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
# Extensions cv2.imwrite can write; other inputs (.gif: its first frame) get a .jpg output.
_WRITABLE = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
OUTPUT_SUFFIX = "_landmarks"
CHIP_SUFFIX = "_chip"
JSON_FORMAT, JSON_VERSION = "face-landmarks", 1
MIN_CHIP, MAX_CHIP = 16, 4096  # --chip-size in pixels

EXIT_OK, EXIT_PARTIAL, EXIT_FAILED = 0, 1, 2

EPILOG = """\
inputs: image files, folders (their images and videos, not recursive) and
globs ("photos/*.jpg", quoted so that the shell leaves them alone). Videos
are recognised by extension (.mp4 .avi .mov .mkv .webm).

outputs: an annotated copy beside each input (pic.jpg -> pic_landmarks.jpg,
clip.mp4 -> clip_landmarks.mp4), or in --output DIR. Every output (images,
videos, chips, JSON, JSONL) passes one check before any work starts: it may
never be an input of the command (of any shard) or another output of the
run, and replaces an existing file only with --force; a second run that
wants an output this run holds stops with one line (common/outputs.py).
Every output is written under a hidden temporary name and renamed into place
when complete, so a link is replaced, never written through, and a killed
run leaves no partial file under a final name. A write error (a full disk)
names the output, stops the run and keeps what was done (exit 1); a JSON
that cannot be written at the end is saved in the temporary folder instead
(the message names it). Folders skip earlier outputs (*_landmarks.*, chips).

video and camera: points are smoothed over time with a One Euro filter
(--smooth, the default for video; stills are never smoothed). Faces are
followed across frames by box overlap, each with its own filter. With --eyes
a blink is counted when the mean eye aspect ratio (EAR) of a face drops below
--blink-ratio times that face's own open-eye EAR (the median of its recent open
frames) for at least --blink-frames consecutive frames; --ear-threshold sets a
fixed EAR instead. Unreadable frames inside a video are skipped while the file
says more frames follow; frames read, skipped and expected are reported.
Ctrl-C stops cleanly and the JSON records the interruption; a camera's video
is kept (Ctrl-C is how a camera stops), an unfinished file's is not.

folders at throughput: --workers threads read and detect the next images
while the landmark models run, and the faces of several images share one
network batch (the same points as one image at a time). --jsonl FILE writes
one line per image or video as soon as it is done (the object of the JSON's
"images" or "videos" list: a video's has "frames"); a run that is killed or
interrupted keeps every line written, and the same command with --resume
skips the inputs already in FILE (compared by resolved path) and appends
the rest (a partial last line is dropped first), replacing their unfinished
outputs; --json is then rebuilt with every input of FILE. Failed inputs and
a video cut short get no line, so --resume tries them again. --shard I/N processes
every N-th input of the expanded list, starting at the I-th (0-based; the
list: folders and globs sorted by name, in argument order), so N processes
or machines split one list without talking to each other; under torchrun
RANK/WORLD_SIZE are the default. "{shard}" in --json and --jsonl names
becomes I (one file per shard).

exit codes:
  0  every input was processed (images without faces included: they are
     reported and have an empty face list in the JSON)
  1  some inputs failed (one "error: <path>: <reason>" line each on stderr),
     at least one was processed; or frames of a video were lost; or an
     output could not be written (the run stopped; the JSON is saved where
     asked or elsewhere, see the message)
  2  nothing could be processed (no JSON is written then), or bad
     arguments, or an output that cannot be written, or a bad checkpoint
     (missing, corrupt, or for the wrong task), or the device is unavailable
  130  interrupted (Ctrl-C); what was done is kept and the message says how
     to run again

examples:
  python inference/predict.py pic.jpg
  python inference/predict.py photos/ "more/*.png" --output out --json out/landmarks.json
  python inference/predict.py pic.jpg --eyes --lines --show --no-save
  python inference/predict.py photos/ --no-save --json photos.json    # JSON only
  python inference/predict.py clip.mp4 --eyes --json clip.json
  python inference/predict.py --camera 0 --eyes --show --max-frames 300
  python inference/predict.py photos/ --no-save --jsonl photos.jsonl         # then, after a kill: add --resume
  python inference/predict.py photos/ --no-save --shard 0/2 --jsonl part{shard}.jsonl &
  python inference/predict.py photos/ --no-save --shard 1/2 --jsonl part{shard}.jsonl
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
    add_weights_argument(g, "face checkpoint (task 'face'; 68 points or any scheme it was trained on), or its ONNX "
                            "export (.onnx, from inference/export_onnx.py; needs onnxruntime); each model's accuracy "
                            "and speed: weights/README.md")
    g.add_argument("--eyes", action="store_true",
                   help="also run the eye model: 12 eye points (iBUG 36-47) and each eye's aspect ratio")
    add_weights_argument(g, "eye checkpoint (task 'eyes') or its .onnx export", "--eye-weights")
    g.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                   help="second pass on the crop given by the first prediction (default: on; lower error "
                        "with detector boxes, see weights/README.md; --no-refine halves the network time)")
    g.add_argument("--flip-test", action="store_true",
                   help="also predict on the mirrored crop and average (with refine only the final pass is "
                        "mirrored: 1.5x the network time); keeps the annotation offset the checkpoint records; "
                        "lower error, see weights/README.md")
    g.add_argument("--multi-crop", action="store_true",
                   help="also predict on six shifted and rescaled crops of each face and average (7x the "
                        "final pass's network time; 14x with --flip-test); lower error. Meant for "
                        "face192.int8.onnx: with face.int8.onnx it is slower than face192.int8.onnx alone and "
                        "less accurate (weights/README.md, Speed)")
    add_device_argument(g)
    add_lever_arguments(g)
    add_detector_arguments(g)
    g = p.add_argument_group("output")
    g.add_argument("--output", "-o", default=None, metavar="DIR",
                   help="write annotated copies into this folder (created if needed) instead of beside the inputs")
    g.add_argument("--force", action="store_true",
                   help="replace existing files (earlier outputs); never an input or another output of this run")
    g.add_argument("--no-save", dest="save", action="store_false", help="do not write annotated images/videos")
    g.add_argument("--show", action="store_true",
                   help="show results in a matplotlib window (with --no-save: only show them)")
    g.add_argument("--lines", action="store_true", help="join the points of each region with lines")
    g.add_argument("--no-boxes", dest="boxes", action="store_false", help="do not draw the face boxes")
    g.add_argument("--json", default=None, metavar="FILE",
                   help="write boxes, scores, points (and eye points, EARs) as JSON; '-' for stdout")
    g = p.add_argument_group("folders at throughput")
    g.add_argument("--jsonl", default=None, metavar="FILE",
                   help="also write one JSON line per image or video as it is done (the JSON's \"images\" "
                        "or \"videos\" entries), "
                        "flushed line by line; an output like the others (an existing FILE is an error "
                        "without --resume or --force)")
    g.add_argument("--resume", action="store_true",
                   help="continue the --jsonl FILE of an interrupted or killed run: skip the inputs already "
                        "in it and append the rest (--force instead replaces it)")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="process only every N-th input of the expanded, name-sorted list, starting at the I-th "
                        "(0 <= I < N); default: RANK/WORLD_SIZE when set (torchrun)")
    g.add_argument("--workers", type=int, default=2, metavar="N",
                   help="threads that read and detect images ahead while the landmark models run on "
                        "batches of several images' faces (default: %(default)s; 0: one image at a time)")
    g = p.add_argument_group("after the points")
    g.add_argument("--pose", action="store_true",
                   help="estimate each face's head pose (yaw, pitch, roll; common/pose.py states the signs), "
                        "draw its axes and add \"pose\" to the JSON")
    g.add_argument("--chips", default=None, metavar="DIR",
                   help="write an aligned chip of every face in still images to DIR, as "
                        "<image stem>_face<i>_chip.png (faces numbered left to right from 0), and add \"chip\" "
                        "(path and 2x3 image-to-chip matrix) to the JSON")
    g.add_argument("--chip-size", type=int, default=112, metavar="N", help="chip side in pixels (default: 112)")
    g.add_argument("--chip-template", choices=("arcface", "dlib"), default="arcface",
                   help="arcface: 5 points on insightface's template (face recognition input); dlib: like "
                        "dlib's get_face_chip (default: arcface)")
    g = p.add_argument_group("video and camera")
    g.add_argument("--track", action=argparse.BooleanOptionalAction, default=True,
                   help="follow faces from frame to frame: each face's points place its next crop, and the "
                        "detector runs only every --detect-every frames or when a face looks lost (default: "
                        "on; --no-track detects every frame)")
    g.add_argument("--detect-every", type=int, default=None, metavar="N",
                   help="while tracking, run the detector every N frames to find new faces (default: "
                        "common/video.py's DETECT_EVERY, chosen by measurement: weights/README.md)")
    g.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                   help="One Euro smoothing of points over time (video and camera only)")
    g.add_argument("--blink-ratio", type=float, default=0.7, metavar="R",
                   help="with --eyes: eyes count as closed while the mean eye aspect ratio of both eyes "
                        "is below R times the face's own open-eye ratio (default: %(default)s)")
    g.add_argument("--ear-threshold", type=float, default=None, metavar="EAR",
                   help="with --eyes: a fixed eye aspect ratio below which eyes count as closed, "
                        "instead of --blink-ratio (e.g. 0.21)")
    g.add_argument("--blink-frames", type=int, default=2, metavar="N",
                   help="with --eyes: a blink needs at least N consecutive closed frames "
                        "(default: %(default)s)")
    g.add_argument("--max-frames", type=int, default=0, metavar="N",
                   help="stop a video or the camera after N frames (0: no limit)")
    return p


def _is_video(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def _is_output_name(path: str) -> bool:
    """An earlier output: ``*_landmarks.*`` or a chip, ``*_face<i>_chip.png``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem.endswith(OUTPUT_SUFFIX) or re.search(r"_face\d+" + CHIP_SUFFIX + "$", stem) is not None


def expand_inputs(specs: list[str]) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Files to process, ``(spec, reason)`` for specs that give none, and
    files of folders that are left out for their type. Folders and globs
    yield images and videos sorted by name, leaving out earlier outputs
    (``*_landmarks.*``); a file named explicitly is taken as it is (reading
    it says whether it is an image)."""
    files, errors, other, seen = [], [], [], set()

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
            entries = sorted(os.path.join(spec, f) for f in os.listdir(spec))
            found = [f for f in entries if wanted(f)]
            other += [f for f in entries if os.path.isfile(f) and not wanted(f) and not _is_output_name(f)]
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
    return files, errors, other


def output_path(src: str, out_dir: str | None, video: bool = False) -> str:
    """``<dir>/<name>_landmarks<ext>``: beside ``src`` or in ``out_dir``;
    videos become .mp4, images keep a writable extension (else .jpg)."""
    base, ext = os.path.splitext(os.path.basename(src))
    ext = ".mp4" if video else (ext if ext.lower() in _WRITABLE else ".jpg")
    folder = out_dir if out_dir is not None else os.path.dirname(src)
    return os.path.join(folder, base + OUTPUT_SUFFIX + ext)


def read_jsonl(path: str) -> tuple[list[dict], int, int]:
    """What an earlier run wrote to a JSONL file: the record of every whole
    line (an image or a video done), the byte length of the whole lines, and
    the bytes of a partial last line (a run killed while writing it; 0 if
    none). A whole line that is not such an object raises
    :class:`InputError` (not our file, or damaged)."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.rfind(b"\n") + 1
    records: list[dict] = []
    for n, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
            raise InputError(f"{path}: line {n} is not a record of predict.py --jsonl "
                             "(damaged, or another file); --force replaces the file")
        records.append(rec)
    return records, end, len(data) - end


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with 0 <= I < N; InputError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or not int(m.group(2)) > int(m.group(1)) >= 0:
        raise InputError(f"--shard takes I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_from_environment() -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` as torchrun sets them, when WORLD_SIZE > 1."""
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    return (rank, world) if world > 1 and 0 <= rank < world else None


def chip_name(chips_dir: str, stem: str, i: int) -> str:
    """``<chips_dir>/<stem>_face<i>_chip.png``: named so that a folder of
    chips is never read back as inputs."""
    return os.path.join(chips_dir, f"{stem}_face{i}{CHIP_SUFFIX}.png")


class Runner:
    """Processes inputs one by one with one :class:`FaceLandmarker`; every
    output is claimed through one :class:`common.outputs.OutputGuard` before
    the work and written whole or not at all."""

    def __init__(self, args, landmarker, log, guard: OutputGuard):
        self.args, self.fl, self.log, self.guard = args, landmarker, log, guard
        self.images: list[dict] = []
        self.videos: list[dict] = []
        self.frames_lost = 0
        self.jsonl = None  # the open --jsonl file (binary, unbuffered, appending)
        self.chip_stems: dict[str, str] = {}  # chip name stem -> the image it belongs to
        self.earlier: list[dict] = []  # --resume: the records the JSONL file already holds

    def say(self, msg: str) -> None:
        print(msg, file=self.log, flush=True)

    def jsonl_line(self, record: dict) -> None:
        """One input's whole record as a --jsonl line (none without --jsonl),
        written last: a line means the input is wholly done. A line cut by
        a write error is dropped by --resume."""
        if self.jsonl is not None:
            left = memoryview((json.dumps(record, separators=(",", ":")) + "\n").encode())
            try:
                while left:  # an unbuffered write may be short (a disk filling up): the rest raises
                    n = self.jsonl.write(left)
                    if not n:
                        raise OSError(5, "nothing could be written")
                    left = left[n:]
            except OSError as exc:
                raise OutputError(self.args.jsonl, exc) from None

    def plan(self, kind: str, source) -> str | None:
        """Claim the annotated output of one input (None with --no-save).
        Under --resume the output of an input not yet done may be replaced:
        it is the unfinished output of the run being continued."""
        a = self.args
        if not a.save:
            return None
        if kind == "camera":
            out = os.path.join(a.output or ".", f"camera{source}{OUTPUT_SUFFIX}.mp4")
        else:
            out = output_path(source, a.output, video=kind == "video")
        name = f"camera {source}" if kind == "camera" else source
        self.guard.claim(out, f"annotated {'image' if kind == 'image' else 'video'} of {name}", replace=a.resume)
        return out

    def plan_chips(self, path: str) -> None:
        """Before the work: two images may not share chip names, earlier chips
        of this image are replaced only with --force (or --resume), and the
        chips folder must be writable."""
        a = self.args
        stem = os.path.splitext(os.path.basename(path))[0]
        key = os.path.join(os.path.realpath(a.chips), stem)
        if key in self.chip_stems:
            raise InputError(f"{path}: its chips would have the names of the chips of {self.chip_stems[key]} "
                             f"({chip_name(a.chips, stem, 0)}, ...); give the two to separate runs with "
                             "different --chips folders")
        self.chip_stems[key] = path
        earlier = sorted(glob.glob(chip_name(glob.escape(a.chips), glob.escape(stem), "*")))
        if earlier and not a.force and not a.resume:
            raise InputError(f"{earlier[0]}: already exists (use --force to replace earlier chips)")
        problem = self.guard.folder_problem(os.path.abspath(a.chips))
        if problem:
            raise InputError(f"{a.chips}: cannot write chips ({problem})")

    def chips(self, path: str, rgb, faces) -> list[tuple[str, bytes]]:
        """Each face's aligned chip, encoded, under a name claimed through the
        guard; written by the caller once every output of the image is ready."""
        import cv2
        from .alignment import align_face

        a = self.args
        stem = os.path.splitext(os.path.basename(path))[0]
        files = []
        for i, f in enumerate(faces):
            chip, matrix = align_face(rgb, f.points, a.chip_size, a.chip_template, scheme=self.fl.scheme)
            out = chip_name(a.chips, stem, i)
            self.guard.claim(out, f"chip {i} of {path}", replace=a.force or a.resume)
            ok, buf = cv2.imencode(".png", cv2.cvtColor(chip, cv2.COLOR_RGB2BGR))
            if not ok:
                raise InputError(f"{path}: could not encode {out}")
            f.chip = {"path": out, "matrix": matrix}
            files.append((out, buf.tobytes()))
        return files

    def remove_stale_chips(self, path: str, n: int) -> None:
        """Chips of an earlier run of this image beyond its ``n`` faces now."""
        stem = os.path.splitext(os.path.basename(path))[0]
        for f in glob.glob(chip_name(glob.escape(self.args.chips), glob.escape(stem), "*")):
            m = re.search(r"_face(\d+)" + CHIP_SUFFIX + r"\.png$", f)
            if m and int(m.group(1)) >= n:
                try:
                    os.remove(f)
                except OSError:
                    pass

    # -- stills ------------------------------------------------------------
    def image(self, path: str, out: str | None) -> None:
        """One still, read, detected and landmarked on its own."""
        from .predictor import prepare_image

        t0 = time.time()
        rgb, gray = prepare_image(path)
        faces = self.fl.landmarks_for_detections(gray, self.fl.detector.detect(rgb))
        del gray  # full-size copies are costly on very large photos
        self.finish_image(path, out, rgb, faces, f" ({(time.time() - t0) * 1000:.0f} ms)")

    def stills(self, jobs: list[tuple]):
        """Stills at throughput (:meth:`FaceLandmarker.iter_landmarks`:
        --workers threads read and detect ahead, faces of several images
        share a batch). ``jobs``: planned ``(kind, src, name, out)``; yields
        ``(index, None)`` for each image done and ``(index, exception)`` for
        each that failed, in order."""
        for i, src, rgb, faces in self.fl.iter_landmarks([j[1] for j in jobs], self.args.workers, keep_rgb=True):
            if isinstance(faces, BaseException):
                yield i, faces
                continue
            try:
                self.finish_image(src, jobs[i][3], rgb, faces)
            except Exception as exc:  # noqa: BLE001 - the caller reports it as this image's failure
                yield i, exc
                continue
            yield i, None

    def finish_image(self, path: str, out: str | None, rgb, faces, timing: str = "") -> None:
        """Everything after the points: chips, the annotated copy (written
        with the chips once all are ready), the log line, the JSON record and
        its --jsonl line (last: a line means the image is wholly done)."""
        import cv2
        from .drawing import draw_faces, draw_pose_axes, face_label, show_image
        from .predictor import face_to_dict

        a = self.args
        h, w = rgb.shape[:2]
        chips = self.chips(path, rgb, faces) if a.chips else []
        if out or a.show:
            # Draw on the image itself when it is ours to change: no full-size copy.
            canvas = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR, dst=rgb if rgb.flags.writeable else None)
            del rgb
            labels = [face_label(f) for f in faces] if a.eyes else None
            draw_faces(canvas, faces, "bgr", lines=a.lines, boxes=a.boxes, labels=labels, scheme=self.fl.scheme)
            if a.pose:
                for f in faces:
                    draw_pose_axes(canvas, f.pose, order="bgr")
            if out:
                ok, buf = cv2.imencode(os.path.splitext(out)[1], canvas)
                if not ok:
                    raise InputError(f"{path}: could not encode {out}")
                chips.append((out, buf.tobytes()))
        for file, data in chips:
            write_atomically(file, data)
            self.guard.done(file)
        if a.chips:
            self.remove_stale_chips(path, len(faces))
        n = len(faces)
        what = f"{n} face{'s' if n != 1 else ''}" if n else "no face found"
        self.say(f"{path}: {what}" + (f" -> {out}" if out else "")
                 + (f" (+ {n} chip{'s' if n != 1 else ''} in {a.chips})" if a.chips and n else "") + timing)
        record = {"path": path, "width": w, "height": h, "output": out, "faces": [face_to_dict(f) for f in faces]}
        self.images.append(record)
        self.jsonl_line(record)
        if a.show:
            show_image(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB, dst=canvas), f"{path}: {what}")

    # -- video and camera ---------------------------------------------------
    def video(self, source, name: str, out: str | None) -> None:
        """``source``: a file path or a camera index; ``name``: for messages.
        The frames go through :class:`common.video.VideoLandmarker` (what the
        API runs); this only draws and writes. The annotated video is written
        under a temporary name and renamed into place once it is complete
        and readable. Ctrl-C records what was done (``"interrupted": true``)
        and is raised again for the caller; a camera's video is kept then (it
        is how a camera is stopped), a file's is not (--resume redoes it)."""
        import cv2
        from .drawing import FrameViewer, draw_faces, draw_pose_axes, face_label
        from .outputs import StagedFile
        from .tracking import FaceTracker
        from .video import VideoLandmarker, read_frames

        a = self.args
        camera = not isinstance(source, str)
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise InputError(f"{name}: cannot open {'camera' if camera else 'video'}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps < 1000 else 30.0
        expected = 0 if camera else max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        tracker = FaceTracker(smooth=a.smooth, ear_threshold=a.ear_threshold, blink_frames=a.blink_frames,
                              blink_ratio=a.blink_ratio)
        stream = VideoLandmarker(self.fl, tracker, track=a.track, fps=fps,
                                 **({"detect_every": a.detect_every} if a.detect_every else {}))
        staged = StagedFile(out) if out else None
        writer = viewer = None
        frames: list[dict] = []
        stats: dict = {}
        interrupted, written = False, 0
        t_start, t_log, size = time.time(), time.time(), None
        try:
            for i, frame in read_frames(cap, expected, stats):
                t = (time.time() - t_start) if camera else i / fps
                if size is None:
                    size = frame.shape[1], frame.shape[0]
                    if staged:
                        writer = cv2.VideoWriter(staged.tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                        if not writer.isOpened():
                            raise OutputError(out, "the video writer could not open it")
                    if a.show:
                        viewer = FrameViewer(name)
                pairs = stream.process(frame, colour="bgr", time=t)
                frames.append(stream.frame_dict(pairs, i, t))
                if writer is not None or viewer is not None:
                    labels = [face_label(f, tr.blinks.count if f.eye_points is not None else None, tr.id)
                              for f, tr in pairs]
                    faces = [f for f, _ in pairs]
                    draw_faces(frame, faces, "bgr", lines=a.lines, boxes=a.boxes, labels=labels,
                               scheme=self.fl.scheme)
                    if a.pose:
                        for f in faces:
                            draw_pose_axes(frame, f.pose, order="bgr")
                    if writer is not None:
                        writer.write(frame)
                        written += 1
                    if viewer is not None and not viewer.update(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)):
                        break
                if a.max_frames and len(frames) >= a.max_frames:
                    break
                if time.time() - t_log > 5:
                    t_log = time.time()
                    print(f"{name}: frame {i + 1}" + (f"/{expected}" if expected else "")
                          + f" ({(i + 1) / (t_log - t_start):.1f} frames/s)", file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            # Ctrl-C is also the way to stop a camera without a window: keep what we have.
            interrupted = not camera
        except BaseException:
            if writer is not None:
                writer.release()
            if staged:
                staged.discard()
            raise
        finally:
            cap.release()
            if viewer is not None:
                viewer.close()
        if writer is not None:
            writer.release()
        if staged and (interrupted or not written):
            staged.discard()
            out = None
        elif staged:
            self.publish_video(staged, written)
        if not frames and not interrupted:
            raise InputError(f"{name}: no frame could be read (not a video, or damaged)")
        n_faces = sum(len(f["faces"]) for f in frames)
        elapsed = time.time() - t_start
        blinks = tracker.total_blinks if a.eyes else None
        stopped_early = interrupted or bool(a.max_frames and len(frames) >= a.max_frames)
        skipped = stats.get("skipped", 0)
        lost = 0 if stopped_early or not expected else max(expected - len(frames), 0)
        self.frames_lost += lost
        counts = f"{len(frames)} frames" + (f" of {expected}" if expected and (lost or skipped) else "")
        msg = (f"{name}: {counts}, {n_faces} faces, {len(tracker.counters)} tracked"
               + (f", blinks {sum(blinks.values())}" if blinks else "")
               + (f" -> {out}" if out else "") + f" ({len(frames) / max(elapsed, 1e-9):.1f} frames/s)")
        self.say(msg)
        record = {"path": name, "width": size[0] if size else None, "height": size[1] if size else None,
                  "fps": round(fps, 3), "output": out, "smoothed": bool(a.smooth),
                  "blinks": {str(k): v for k, v in blinks.items()} if blinks is not None else None,
                  "frames_read": len(frames), "frames_skipped": skipped, "frames_expected": expected or None,
                  "frames": frames}
        if interrupted:
            record["interrupted"] = True
        else:  # a video cut short by Ctrl-C is done again by --resume
            self.jsonl_line(record)
        self.videos.append(record)
        if lost:
            print(f"error: {name}: {lost} of {expected} frames could not be read ({skipped} unreadable "
                  f"frames skipped; the file is damaged or cut short)", file=sys.stderr, flush=True)
        if interrupted:
            raise KeyboardInterrupt

    def publish_video(self, staged, written: int) -> None:
        """Rename a finished video into place once it reads back whole: the
        video writer reports no errors, and a full disk leaves a file
        without its index (unplayable) or short of frames."""
        import cv2
        cap = cv2.VideoCapture(staged.tmp)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
        cap.release()
        if n != written:
            staged.discard()
            reason = self.guard.space_problem(os.path.dirname(os.path.abspath(staged.path)))
            raise OutputError(staged.path, reason or f"the written video reads back {n} of {written} frames")
        staged.commit()
        self.guard.done(staged.path)


def json_document(args, runner: Runner | None, errors: list[dict], interrupted: dict | None = None) -> dict:
    """The whole JSON output (see README.md, section JSON, for the shape);
    under --resume it holds the inputs of the JSONL file done before too."""
    earlier = runner.earlier if runner else []
    doc = {"format": JSON_FORMAT, "version": JSON_VERSION,
           "weights": args.weights, "eye_weights": args.eye_weights if args.eyes else None,
           "scheme": runner.fl.scheme.name if runner and runner.fl else None,
           "refine": bool(args.refine), "flip_test": bool(args.flip_test),
           "multi_crop": bool(args.multi_crop),
           "chip_template": args.chip_template if args.chips else None,
           "images": [r for r in earlier if "frames" not in r] + (runner.images if runner else []),
           "videos": [r for r in earlier if "frames" in r] + (runner.videos if runner else []),
           "errors": errors}
    if interrupted is not None:
        doc["interrupted"] = interrupted
    return doc


_NUMBER_LIST = re.compile(r"\[\s*((?:-?[\d.eE+-]+|true|false)(?:,\s*(?:-?[\d.eE+-]+|true|false))*)\s*\]")


def dumps_json(doc: dict) -> str:
    """Indented JSON with every list of plain numbers or booleans (a box, an
    ``[x, y]`` pair, the ``inside`` flags) kept on one line."""
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]",
                            json.dumps(doc, indent=1))


def _write_json(path: str, doc: dict) -> str | None:
    """Write the JSON document to ``path`` ('-': stdout). If that fails,
    save it in the temporary folder instead; returns the reason it failed
    and where it went, or None when it was written where asked."""
    text = dumps_json(doc) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_atomically(path, text.encode())
        return None
    except OSError as exc:
        import tempfile
        fd, rescue = tempfile.mkstemp(prefix="predict-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        problem = str(exc) if isinstance(exc, OutputError) else f"{path}: cannot write ({exc.strerror or exc})"
        return f"{problem}; the results are saved in {rescue}"


def _short(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return rel if len(rel) < len(path) else path


def _argument_problem(args) -> str | None:
    """What is wrong with the arguments before anything is read (None: nothing)."""
    if not args.inputs and args.camera is None:
        return "no input: give image or video files, folders or globs, or --camera INDEX"
    if not args.save and not args.show and not args.json and not args.jsonl and not args.chips:
        return "nothing to do: --no-save without --show, --json, --jsonl or --chips"
    if args.blink_frames < 1:
        return "--blink-frames must be at least 1"
    if not 0 < args.blink_ratio < 1:
        return f"--blink-ratio must be between 0 and 1, got {args.blink_ratio}"
    if args.ear_threshold is not None and not 0 < args.ear_threshold < 1:
        return f"--ear-threshold must be between 0 and 1, got {args.ear_threshold}"
    if args.output and (os.path.isfile(args.output) or (
            not os.path.exists(args.output)
            and os.path.splitext(args.output)[1].lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS + (".json",))):
        return f"{args.output}: --output takes a folder for the annotated copies, not a file name"
    if args.detect_every is not None and args.detect_every < 1:
        return f"--detect-every must be at least 1, got {args.detect_every}"
    if args.resume and not args.jsonl:
        return "--resume continues a --jsonl file: give --jsonl FILE"
    if args.jsonl == "-":
        return "--jsonl takes a file name (use --json - for stdout)"
    if args.workers < 0:
        return f"--workers must be 0 or more, got {args.workers}"
    if args.shard is not None and args.camera is not None:
        return "--shard splits a list of files, not a camera"
    if not MIN_CHIP <= args.chip_size <= MAX_CHIP:
        return f"--chip-size must be between {MIN_CHIP} and {MAX_CHIP} pixels, got {args.chip_size}"
    if args.chips and os.path.exists(args.chips) and not os.path.isdir(args.chips):
        return f"{args.chips}: --chips takes a folder"
    if args.show:
        from .drawing import display_problem
        problem = display_problem()
        if problem:
            return f"--show: {problem}"
    return None


class _Stop(Exception):
    """Ends :func:`main` early with ``code``; what went wrong is already printed."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)


def _note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _resolve_shard(args) -> tuple[int, int] | None:
    """``--shard I/N``, or RANK/WORLD_SIZE under torchrun; fills ``{shard}`` in the JSON names."""
    shard = None
    try:
        if args.shard is not None:
            shard = parse_shard(args.shard)
        elif args.camera is None and shard_from_environment():
            shard = shard_from_environment()
            if any(f and f != "-" and "{shard}" not in f for f in (args.json, args.jsonl)):
                _fail("RANK/WORLD_SIZE are set (torchrun): every process would write the same --json/--jsonl "
                      "file; put {shard} in its name (e.g. --jsonl out/part{shard}.jsonl)")
                raise _Stop(EXIT_FAILED)
            _note(f"note: shard {shard[0]}/{shard[1]} from RANK/WORLD_SIZE")
    except InputError as exc:
        _fail(str(exc))
        raise _Stop(EXIT_FAILED) from None
    for key in ("json", "jsonl"):
        if getattr(args, key) and getattr(args, key) != "-":
            setattr(args, key, getattr(args, key).replace("{shard}", str(shard[0] if shard else 0)))
    return shard


def _gather_inputs(args, shard) -> tuple[list[str], list[str], list[dict]]:
    """Every input file, this shard's share of them, and the inputs that failed already."""
    all_files, errors, other = expand_inputs(args.inputs)
    files = all_files[shard[0]::shard[1]] if shard else all_files
    for path, reason in errors:
        _fail(f"{path}: {reason}")
    if args.chips and any(_is_video(f) for f in files) or (args.chips and args.camera is not None):
        _note("note: --chips writes chips of still images only; videos and cameras get none")
    if other:
        _note(f"note: skipped {len(other)} file{'s' if len(other) > 1 else ''} of other types in the folders: "
              + ", ".join(_short(f) for f in other[:5]) + (", ..." if len(other) > 5 else ""))
    return all_files, files, [{"path": path, "error": reason} for path, reason in errors]


def _claim_json(args, guard: OutputGuard) -> tuple[list[dict], int, int]:
    """Claim --json and --jsonl; with --resume, the records the JSONL file
    holds, the bytes to keep and the length of a cut last line. Under
    --resume the JSON is rebuilt (earlier records and this run's), so it may
    be replaced."""
    try:
        if args.json and args.json != "-":
            guard.claim(args.json, "JSON output", replace=args.resume)
        if args.jsonl:
            guard.claim(args.jsonl, "JSONL output", replace=args.resume)
            if args.resume and os.path.isfile(args.jsonl) and not is_device(args.jsonl):
                if os.path.islink(args.jsonl) or os.stat(args.jsonl).st_nlink > 1:
                    raise InputError(f"{args.jsonl}: --resume will not append through a link (it would change "
                                     "the file it points to); copy the file in its place first")
                return read_jsonl(args.jsonl)
    except OSError as exc:  # reading the JSONL file
        _fail(f"{args.jsonl}: cannot read ({exc.strerror or exc})")
        raise _Stop(EXIT_FAILED) from None
    except InputError as exc:
        _fail(str(exc))
        raise _Stop(EXIT_FAILED) from None
    return [], 0, 0


def _plan(args, runner: Runner, guard: OutputGuard, all_files, files, shard, done, err_list) -> list[tuple]:
    """``(kind, source, name, output)`` of every input still to do, each output
    claimed before any work: a bad location costs nothing. An output that
    another run holds ends the run (one line)."""
    jobs = [("camera", args.camera)] if args.camera is not None else []
    jobs += [("video" if _is_video(f) else "image", f) for f in files if os.path.realpath(f) not in done]
    if shard:  # other shards' outputs: a clash between two inputs fails as in one unsharded run
        mine = set(files)
        for f in all_files:
            if f not in mine and args.save:
                guard.reserve(output_path(f, args.output, video=_is_video(f)), f"annotated output of {f}")
    planned = []
    for kind, src in jobs:
        name = f"camera {src}" if kind == "camera" else src
        try:
            if args.chips and kind == "image":
                runner.plan_chips(src)
            planned.append((kind, src, name, runner.plan(kind, src)))
        except InputError as exc:
            _fail(str(exc))
            if isinstance(exc, OutputBusyError):
                raise _Stop(EXIT_FAILED) from None
            err_list.append({"path": str(name), "error": str(exc)})
    return planned


def _load_landmarker(args):
    """The models, loaded once; a bad checkpoint, device or detector ends the run."""
    t0 = time.time()
    # OpenCV and its FFmpeg backend print their own lines about unreadable
    # videos and absent cameras; ours are enough (set these to see theirs).
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    # Heavy imports only now: --help and argument errors stay instant.
    from .errors import CheckpointError, DetectorError, DeviceError
    from .predictor import FaceLandmarker
    from .alignment import template_groups
    from .schemes import require_ibug68

    try:
        fl = FaceLandmarker(args.weights, None, args.device, args.detector, args.detector_model,
                            refine=args.refine, flip_test=args.flip_test, min_face=args.min_face,
                            multi_crop=args.multi_crop, levers=TorchLevers.from_args(args))
        # The face-specific features need the 68 iBUG points: one line, before any work.
        for wanted, option in ((args.eyes, "--eyes"), (args.pose, "--pose")):
            if wanted:
                require_ibug68(fl.scheme, option)
        if args.chips:  # ArcFace chips need five named points only (common/alignment.py)
            template_groups(args.chip_template, fl.scheme)
        if args.eyes:
            fl.add_eye_model(args.eye_weights or "default")
        fl.pose = args.pose
    except (CheckpointError, DeviceError, DetectorError, InputError) as exc:
        _fail(str(exc))
        raise _Stop(EXIT_FAILED) from None
    args.weights, args.eye_weights = fl.weights, fl.eye_weights
    for line in fl.choice_lines():
        _note(line)
    _note(f"loaded {_short(args.weights)}" + (f" and {_short(args.eye_weights)}" if args.eyes else "")
          + f" on {fl.device} in {time.time() - t0:.1f}s")
    if fl.scheme.ibug_points is None:
        _note(f"scheme: {fl.scheme.describe()}; detector boxes: {fl.calibration_source}")
    return fl


def _open_jsonl(args, keep: int, partial: int):
    """The --jsonl file, open for appending lines (None without --jsonl). A
    new one is made under a temporary name and renamed into place at once:
    a link of that name is replaced, never written through."""
    if not args.jsonl:
        return None
    try:
        if is_device(args.jsonl):
            return open(args.jsonl, "ab", buffering=0)
        if args.resume and os.path.isfile(args.jsonl):
            if partial:  # a line cut by a kill or a write error: the input is done again
                os.truncate(args.jsonl, keep)
            return open(args.jsonl, "ab", buffering=0)
        staged = StagedFile(args.jsonl)
        f = open(staged.tmp, "xb", buffering=0)
        staged.commit()
        return f
    except OSError as exc:
        _fail(f"{args.jsonl}: cannot write the JSONL output ({exc.strerror or exc})")
        raise _Stop(EXIT_FAILED) from None


def _process(args, runner: Runner, planned: list[tuple], err_list: list[dict]):
    """Run every planned input; returns ``(processed, failed, interrupted,
    write_error)`` (``interrupted``: what Ctrl-C stopped, or None;
    ``write_error``: the :class:`OutputError` that stopped the run, or None).
    A failed input is reported and the next one goes on; an output that
    cannot be written (a full disk) stops the run: every later input would
    fail the same way."""
    import cv2
    from .errors import ImageReadError
    known = (InputError, ImageReadError, ValueError, OSError, cv2.error, MemoryError)
    processed, failed = 0, len(err_list)

    def failure(name, exc) -> None:
        if isinstance(exc, OutputError) or not isinstance(exc, known):
            raise exc
        msg = "out of memory" if isinstance(exc, MemoryError) else (
            str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__)
        if not msg.startswith(str(name)):
            msg = f"{name}: {msg}"
        _fail(msg)
        err_list.append({"path": str(name), "error": msg[len(str(name)) + 2:]})

    nxt = 0  # the first planned input not yet done or failed
    try:
        while nxt < len(planned):
            kind, src, name, out = planned[nxt]
            if kind == "image" and args.workers > 0:
                # A run of stills: read and detected ahead, their faces batched together.
                first, end = nxt, nxt
                while end < len(planned) and planned[end][0] == "image":
                    end += 1
                for i, exc in runner.stills(planned[first:end]):
                    nxt = first + i
                    if exc is None:
                        processed += 1
                    else:
                        failed += 1
                        failure(planned[first + i][2], exc)
                    nxt = first + i + 1
                continue
            try:
                if kind == "image":
                    runner.image(src, out)
                else:
                    runner.video(src, name, out)
                processed += 1
            except known as exc:
                failed += 1
                failure(name, exc)
            nxt += 1
    except KeyboardInterrupt:
        return processed, failed, {"input": str(planned[min(nxt, len(planned) - 1)][2]), "inputs_done": processed,
                                   "inputs_not_started": [str(p[2]) for p in planned[nxt + 1:]]}, None
    except OutputError as exc:
        failed -= 1  # the input was fine: its output was not
        _fail(f"{exc} (stopped: {len(planned) - nxt} inputs not done; "
              + ("--resume continues" if args.jsonl else "free space, then run again with --force") + ")")
        err_list.append({"path": exc.path, "error": f"cannot write ({exc.reason})"})
        return processed, failed, None, exc
    finally:
        if runner.jsonl is not None:
            try:
                runner.jsonl.close()
            except OSError:
                pass
    return processed, failed, None, None


def _finish(args, runner: Runner, planned, err_list, processed: int, failed: int, interrupted,
            write_error, log) -> int:
    """Write the JSON, report an interruption; returns the exit code."""
    json_problem = None
    wrote_json = bool(args.json) and (processed > 0 or interrupted is not None or runner.videos
                                      or runner.earlier or write_error is not None)
    if wrote_json:
        json_problem = _write_json(args.json, json_document(args, runner, err_list, interrupted))
        if json_problem:
            _fail(json_problem)
        elif args.json != "-":
            print(f"JSON written to {args.json}", file=log)
    if interrupted is not None:
        kept = [p[3] for p in planned if p[3] and os.path.exists(p[3])] + (
            [args.json] if wrote_json and args.json != "-" and not json_problem else [])
        _note(f"interrupted during {interrupted['input']} ({processed} of {len(planned)} inputs done); "
              + (f"kept {', '.join(_short(k) for k in kept)}; " if kept else "")
              + ("to continue, run the same command with --resume (--jsonl keeps every input done)"
                 if args.jsonl else "to run again, add --force (it replaces this run's outputs)"))
        return 130
    if write_error is not None:
        return EXIT_PARTIAL
    if processed == 0:
        return EXIT_FAILED
    return EXIT_PARTIAL if (failed or json_problem or runner.frames_lost) else EXIT_OK


def main(args: argparse.Namespace) -> int:
    """Process every input; returns the exit code (see the parser's epilog)."""
    problem = _argument_problem(args)
    if problem:
        _fail(problem)
        return EXIT_FAILED
    log = sys.stderr if args.json == "-" else sys.stdout
    guard = None
    try:
        shard = _resolve_shard(args)
        all_files, files, err_list = _gather_inputs(args, shard)
        # Every input of the command, whichever shard it falls to, is safe from every output.
        guard = OutputGuard(all_files, args.force, hint="use --output DIR to separate them" if not args.output else
                            "inputs of the same name from different folders: use separate --output folders")
        earlier, jsonl_keep, jsonl_partial = _claim_json(args, guard)
        done = {os.path.realpath(r["path"]) for r in earlier}
        skipped = [f for f in files if os.path.realpath(f) in done]
        if args.resume:
            _note(f"resuming {args.jsonl}: {len(skipped)} of {len(files)} inputs already done"
                  + (f", dropping a partial last line ({jsonl_partial} bytes)" if jsonl_partial else ""))
        runner = Runner(args, None, log, guard)
        runner.earlier = earlier
        planned = _plan(args, runner, guard, all_files, files, shard, done, err_list)
        if not planned:
            if (skipped or (shard and not files)) and len(err_list) == 0:
                _note("nothing left to do: " + (f"all {len(skipped)} inputs are in {args.jsonl}" if skipped else
                                                f"shard {shard[0]}/{shard[1]} of {len(all_files)} inputs is empty"))
                if args.json and earlier:  # the JSON of the whole run, from the JSONL file
                    problem = _write_json(args.json, json_document(args, runner, err_list))
                    if problem:
                        _fail(problem)
                        return EXIT_PARTIAL
                return EXIT_OK
            return EXIT_FAILED
        runner.fl = _load_landmarker(args)
        runner.jsonl = _open_jsonl(args, jsonl_keep, jsonl_partial)
        processed, failed, interrupted, write_error = _process(args, runner, planned, err_list)
        return _finish(args, runner, planned, err_list, processed, failed, interrupted, write_error, log)
    except _Stop as stop:
        return stop.code
    finally:
        if guard is not None:
            guard.release()
