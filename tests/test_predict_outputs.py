"""predict.py never loses work or data: every output passes one guard
(never an input, never another output of the run, writable before the work
starts), damaged videos are read past their bad frames, Ctrl-C keeps what
was done, and messages say what to do. Untrained checkpoints for plumbing;
the shipped weights where a real face must be found."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import (EYE_WEIGHTS, FACE_WEIGHTS, REPO,  # noqa: E402
                               portrait_path, run_predict)


def errors(proc) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


def write_video(path: Path, frames: int = 30, fps: float = 30.0, step: int = 2, scale: float = 0.5) -> None:
    """The portrait panned sideways, ``frames`` frames."""
    bgr = cv2.imread(portrait_path())
    bgr = cv2.resize(bgr, None, fx=scale, fy=scale)
    h, w = bgr.shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for i in range(frames):
        m = np.float32([[1, 0, step * i - step * frames / 2], [0, 1, 0]])
        vw.write(cv2.warpAffine(bgr, m, (w, h), borderMode=cv2.BORDER_REPLICATE))
    vw.release()


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


# -- 1. never an input, never another output of the same run ------------------

def test_json_never_replaces_an_input_even_with_force(tmp_path, photo, ckpts):
    before = photo.read_bytes()
    write_video(tmp_path / "clip.mp4", frames=3)
    (tmp_path / "folder").mkdir()
    shutil.copy(photo, tmp_path / "folder" / "a.jpg")
    (tmp_path / "link.jpg").symlink_to("pic.jpg")
    os.link(photo, tmp_path / "hard.jpg")
    for inputs, target in [(["pic.jpg"], "pic.jpg"), (["clip.mp4"], "clip.mp4"), (["folder"], "folder/a.jpg"),
                           (["pic.jpg"], "link.jpg"), (["pic.jpg"], "hard.jpg"), (["pic.jpg"], "folder/../pic.jpg")]:
        saved = (tmp_path / target).read_bytes()
        proc = run_predict(*inputs, "--json", target, "--force", "--weights", ckpts["face"], cwd=tmp_path)
        errs = errors(proc)
        assert proc.returncode == 2 and len(errs) == 1 and "input" in errs[0], proc.stderr
        assert (tmp_path / target).read_bytes() == saved
    assert photo.read_bytes() == before
    assert not (tmp_path / "pic_landmarks.jpg").exists()  # refused before any work


def test_json_never_replaces_an_output_of_the_same_run(tmp_path, photo, ckpts):
    shutil.copy(photo, tmp_path / "other.jpg")
    proc = run_predict("pic.jpg", "other.jpg", "--json", "pic_landmarks.jpg", "--force",
                       "--weights", ckpts["face"], cwd=tmp_path)
    errs = errors(proc)
    assert proc.returncode == 1 and len(errs) == 1 and "JSON output" in errs[0], proc.stderr
    doc = json.loads((tmp_path / "pic_landmarks.jpg").read_text())  # the JSON, not replaced by an image
    assert [im["path"] for im in doc["images"]] == ["other.jpg"]
    # Two inputs of one name from different folders into one --output folder.
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(photo, tmp_path / d / "x.jpg")
    proc = run_predict("a/x.jpg", "b/x.jpg", "--output", "out", "--weights", ckpts["face"], cwd=tmp_path)
    errs = errors(proc)
    assert proc.returncode == 1 and len(errs) == 1 and errs[0].startswith("error: out/x_landmarks.jpg")
    assert "--output folders" in errs[0]  # not "use --output": it was given


def test_folder_rerun_with_a_new_json(tmp_path, photo, ckpts):
    assert run_predict("pic.jpg", "--weights", ckpts["face"], cwd=tmp_path).returncode == 0
    proc = run_predict(".", "--json", "new.json", "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 2 and "--no-save" in errors(proc)[0]
    proc = run_predict(".", "--json", "new.json", "--no-save", "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((tmp_path / "new.json").read_text())["images"]) == 1


# -- 2. outputs that cannot be written ----------------------------------------

def _unprivileged(cmd: list[str]) -> list[str]:
    """As root, drop the capabilities that ignore file permissions."""
    if os.geteuid() != 0:
        return cmd
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", *cmd]


def test_unwritable_json_folder_fails_before_the_work(tmp_path, photo, ckpts):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    cmd = _unprivileged([sys.executable, str(REPO / "inference" / "predict.py"), "pic.jpg", "--json",
                         "ro/out.json", "--weights", str(ckpts["face"])])
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    errs = errors(proc)
    assert proc.returncode == 2 and errs == ["error: ro/out.json: cannot write the JSON output (Permission denied)"]
    assert "loaded" not in proc.stderr and not (tmp_path / "pic_landmarks.jpg").exists()


def test_json_that_fails_at_the_end_is_rescued(tmp_path, photo, ckpts, monkeypatch, capsys):
    from common import predict_cli as I
    real = I.write_atomically

    def fail_json(path, data):
        if path.endswith(".json"):
            raise PermissionError(13, "Permission denied")
        return real(path, data)

    monkeypatch.setattr(I, "write_atomically", fail_json)
    monkeypatch.chdir(tmp_path)
    code = I.main(I.get_args_parser().parse_args(["pic.jpg", "--json", "out.json", "--weights", str(ckpts["face"])]))
    err = capsys.readouterr().err
    assert code == 1
    line = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(line) == 1 and "out.json: cannot write (Permission denied)" in line[0]
    rescue = line[0].rsplit(" ", 1)[1]
    assert json.loads(Path(rescue).read_text())["images"][0]["path"] == "pic.jpg"
    os.remove(rescue)
    assert (tmp_path / "pic_landmarks.jpg").is_file()


def test_unwritable_image_output_names_the_reason(tmp_path, photo, ckpts):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    cmd = _unprivileged([sys.executable, str(REPO / "inference" / "predict.py"), "pic.jpg", "--output", "ro",
                         "--weights", str(ckpts["face"])])
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    errs = errors(proc)
    assert proc.returncode == 2 and len(errs) == 1 and errs[0].endswith("(Permission denied)"), proc.stderr


# -- 3. a video damaged in the middle ----------------------------------------

def test_damaged_video_is_read_past_its_bad_frames(tmp_path, ckpts):
    write_video(tmp_path / "clip.mp4", frames=60)
    data = bytearray((tmp_path / "clip.mp4").read_bytes())
    rng = random.Random(0)
    for k in range(len(data) // 3, 2 * len(data) // 3):
        data[k] = rng.randrange(256)
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    proc = run_predict("bad.mp4", "--no-save", "--json", "bad.json", "--weights", ckpts["face"], cwd=tmp_path)
    errs = errors(proc)
    assert proc.returncode == 1 and len(errs) == 1 and "of 60 frames could not be read" in errs[0], proc.stderr
    (v,) = json.loads((tmp_path / "bad.json").read_text())["videos"]
    assert v["frames_expected"] == 60 and 20 < v["frames_read"] < 60
    assert v["frames_read"] + v["frames_skipped"] == 60 and len(v["frames"]) == v["frames_read"]
    # An intact video: every frame, exit 0.
    proc = run_predict("clip.mp4", "--no-save", "--json", "ok.json", "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (v,) = json.loads((tmp_path / "ok.json").read_text())["videos"]
    assert (v["frames_read"], v["frames_skipped"]) == (60, 0)


# -- 4. blinks on a panned real photo ------------------------------------------

@pytest.mark.skipif(not (FACE_WEIGHTS.is_file() and EYE_WEIGHTS.is_file()), reason="shipped weights not present")
def test_panned_photo_has_no_blinks(tmp_path):
    write_video(tmp_path / "pan.mp4", frames=90, step=3)
    proc = run_predict("pan.mp4", "--eyes", "--weights", FACE_WEIGHTS, "--eye-weights", EYE_WEIGHTS,
                       "--no-save", "--json", "pan.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (v,) = json.loads((tmp_path / "pan.json").read_text())["videos"]
    assert v["frames_read"] == 90 and v["blinks"] and set(v["blinks"].values()) == {0}


# -- 5. Ctrl-C -------------------------------------------------------------------

def test_ctrl_c_records_the_video_and_leaves_no_partial_file(tmp_path, ckpts, monkeypatch, capsys):
    from common import predict_cli as I
    from common import predictor

    class Interrupting(predictor.FaceLandmarker):
        calls = 0

        def landmarks_for_detections(self, *args, **kwargs):  # once per frame, tracked or not
            Interrupting.calls += 1
            if Interrupting.calls == 6:
                raise KeyboardInterrupt
            return super().landmarks_for_detections(*args, **kwargs)

    write_video(tmp_path / "clip.mp4", frames=20)
    shutil.copy(portrait_path(), tmp_path / "z.jpg")
    monkeypatch.setattr(predictor, "FaceLandmarker", Interrupting)
    monkeypatch.chdir(tmp_path)
    args = I.get_args_parser().parse_args(["clip.mp4", "z.jpg", "--json", "run.json", "--weights", str(ckpts["face"])])
    assert I.main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted during clip.mp4" in err and "--force" in err
    doc = json.loads((tmp_path / "run.json").read_text())
    (v,) = doc["videos"]
    assert v["interrupted"] is True and len(v["frames"]) == 5
    assert doc["interrupted"] == {"input": "clip.mp4", "inputs_done": 0, "inputs_not_started": ["z.jpg"]}
    # An unfinished video is never under its final name, and nothing of it is left (no temporary
    # file, no lock): the run is done again whole.
    assert v["output"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "run.json", "z.jpg"]


# -- 7. smaller ones -----------------------------------------------------------

def test_show_without_a_display_says_so(tmp_path, photo, ckpts):
    proc = run_predict("pic.jpg", "--show", "--no-save", "--weights", ckpts["face"], cwd=tmp_path)
    errs = errors(proc)
    assert proc.returncode == 2 and len(errs) == 1 and "--show" in errs[0]


def test_gif_in_a_folder_is_read_and_other_files_are_named(tmp_path, photo, ckpts):
    (tmp_path / "in").mkdir()
    from PIL import Image
    Image.open(photo).save(tmp_path / "in" / "a.gif")
    (tmp_path / "in" / "notes.txt").write_text("hello")
    proc = run_predict("in", "--json", "in.json", "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "notes.txt" in proc.stderr
    doc = json.loads((tmp_path / "in.json").read_text())
    assert [Path(im["path"]).name for im in doc["images"]] == ["a.gif"]
    assert (tmp_path / "in" / "a_landmarks.jpg").is_file()


def test_nothing_processed_writes_no_json_whatever_the_reason(tmp_path, ckpts):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    for inputs in (["nothing/*.png"], ["broken.png"]):
        proc = run_predict(*inputs, "--json", "x.json", "--weights", ckpts["face"], cwd=tmp_path)
        assert proc.returncode == 2 and len(errors(proc)) == 1
        assert not (tmp_path / "x.json").exists()


def test_output_must_be_a_folder(tmp_path, photo, ckpts):
    proc = run_predict("pic.jpg", "--output", "result.jpg", "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 2 and "folder" in errors(proc)[0]
    assert not (tmp_path / "result.jpg").exists()


@pytest.mark.parametrize("case", ["random", "truncated"])
def test_bad_checkpoint_messages_are_whole_and_ours(tmp_path, photo, ckpts, case):
    bad = tmp_path / "bad.pt"
    data = Path(ckpts["face"]).read_bytes()
    bad.write_bytes(os.urandom(4096) if case == "random" else data[: len(data) // 3])
    proc = run_predict("pic.jpg", "--weights", bad, cwd=tmp_path)
    (err,) = errors(proc)
    assert proc.returncode == 2 and "weights_only" not in err and "2.6" not in err
    assert err.endswith(")") or err.endswith("does not)") or err.endswith("not")


def test_gpu_message_fits_the_build(monkeypatch):
    import torch
    from common.device import DeviceError, select_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.version, "hip", None)
    with pytest.raises(DeviceError) as e:
        select_device("cuda")
    assert "install" not in str(e.value) and "driver" in str(e.value)
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(DeviceError) as e:
        select_device("cuda")
    assert "GPU build" in str(e.value)


# -- 8. faces cut by the image border ------------------------------------------

def test_points_outside_the_image_are_flagged(ckpts):
    from common.predictor import FaceLandmarker, points_inside
    pts = np.array([[0, 0], [9.4, 4.4], [-1, 3], [3, 10]], np.float32)
    assert points_inside(pts, (10, 10)).tolist() == [True, True, False, False]
    # MTCNN: it finds a face cut through the middle, which BlazeFace (the default) scores below its
    # threshold (weights/README.md, Evaluation).
    fl = FaceLandmarker(str(FACE_WEIGHTS if FACE_WEIGHTS.is_file() else ckpts["face"]), device="cpu",
                        detector="mtcnn")
    rgb = cv2.cvtColor(cv2.imread(portrait_path()), cv2.COLOR_BGR2RGB)
    (whole,) = fl.detect_landmarks(rgb)
    assert whole.inside.all()
    # Cut the face through the middle of the jaw: the hidden jaw points are outside.
    cut_x = int(np.median(whole.points[:, 0]))
    faces = fl.detect_landmarks(np.ascontiguousarray(rgb[:, :cut_x]))
    if FACE_WEIGHTS.is_file():
        assert len(faces) == 1 and not faces[0].inside.all()
    for f in faces:
        assert f.inside.tolist() == points_inside(f.points, (rgb.shape[0], cut_x)).tolist()


# -- chips and pose through predict.py ---------------------------------------

@pytest.mark.skipif(not FACE_WEIGHTS.is_file(), reason="shipped weights not present")
def test_pose_and_chips_on_the_portrait_and_its_mirror(tmp_path, photo):
    from common.alignment import transform_points
    cv2.imwrite(str(tmp_path / "mirror.jpg"), cv2.imread(str(photo))[:, ::-1])
    proc = run_predict("pic.jpg", "mirror.jpg", "--pose", "--chips", "out/chips", "--output", "out", "--json",
                       "out/run.json", "--weights", FACE_WEIGHTS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out" / "run.json").read_text())
    (a,), (b,) = (im["faces"] for im in doc["images"])
    assert abs(a["pose"]["yaw"]) < 10 and abs(a["pose"]["roll"]) < 8  # near-frontal
    assert abs(a["pose"]["yaw"] + b["pose"]["yaw"]) < 1.5 and abs(a["pose"]["roll"] + b["pose"]["roll"]) < 1.5
    chip = cv2.imread(str(tmp_path / a["chip"]["path"]))
    assert a["chip"]["path"] == os.path.join("out", "chips", "pic_face0_chip.png") and chip.shape == (112, 112, 3)
    # The eyes land level, near the template's eye places.
    on_chip = transform_points(np.array(a["chip"]["matrix"]), np.array(a["points"], np.float32))
    right, left = on_chip[36:42].mean(0), on_chip[42:48].mean(0)
    assert abs(np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0]))) < 2
    assert np.linalg.norm(right - (38.29, 51.70)) < 4 and np.linalg.norm(left - (73.53, 51.50)) < 4
    # Chips follow the never-overwrite rule like every output.
    proc = run_predict("pic.jpg", "--chips", "out/chips", "--no-save", "--json", "-", "--weights", FACE_WEIGHTS,
                       cwd=tmp_path)
    assert proc.returncode == 2 and "pic_face0_chip.png: already exists" in errors(proc)[0]


def test_video_tracks_by_default_and_detects_every_frame_with_no_track(tmp_path, ckpts):
    write_video(tmp_path / "clip.mp4", frames=12)
    face_w = FACE_WEIGHTS if FACE_WEIGHTS.is_file() else ckpts["face"]
    flags = {}
    for opt in ("--track", "--no-track"):
        proc = run_predict("clip.mp4", opt, "--detect-every", 4, "--no-save", "--json", f"{opt[2:]}.json",
                           "--weights", face_w, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        (v,) = json.loads((tmp_path / f"{opt[2:]}.json").read_text())["videos"]
        flags[opt] = [fr["detected"] for fr in v["frames"]]
    assert flags["--no-track"] == [True] * 12
    if FACE_WEIGHTS.is_file():  # a real face is followed: detection only on schedule
        assert flags["--track"] == [i % 4 == 0 for i in range(12)]
    proc = run_predict("clip.mp4", "--detect-every", 0, "--weights", face_w, cwd=tmp_path)
    assert proc.returncode == 2 and "--detect-every" in errors(proc)[0]
