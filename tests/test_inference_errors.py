"""inference/predict.py on bad and unusual input: one ``error: <path>: <reason>``
line per bad input, no traceback, the documented exit codes. Runs the script
in a fresh interpreter; an untrained checkpoint is enough for the plumbing."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import (check_json_document, portrait_path,  # noqa: E402
                               run_predict)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def assert_clean(proc) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def test_bad_inputs_are_reported_and_skipped(tmp_path, photo, ckpts):
    (tmp_path / "notimage.jpg").write_text("hello, I am not a JPEG\n")
    data = Path(portrait_path()).read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    proc = run_predict("pic.jpg", "missing.jpg", "notimage.jpg", "truncated.jpg", "nothing/*.png",
                       "--weights", ckpts["face"], cwd=tmp_path)
    assert_clean(proc)
    assert proc.returncode == 1, proc.stderr
    errs = error_lines(proc.stderr)
    assert len(errs) == 4, proc.stderr
    for name in ("missing.jpg", "notimage.jpg", "truncated.jpg", "nothing/*.png"):  # each named once
        assert sum(e.startswith(f"error: {name}: ") for e in errs) == 1, errs
    assert (tmp_path / "pic_landmarks.jpg").is_file()


def test_nothing_processed_exits_2(tmp_path, ckpts):
    (tmp_path / "notimage.png").write_bytes(b"\x89PNG broken")
    proc = run_predict("missing.jpg", "notimage.png", "--weights", ckpts["face"], cwd=tmp_path)
    assert_clean(proc)
    assert proc.returncode == 2
    assert len(error_lines(proc.stderr)) == 2


def test_no_input_is_an_argument_error(tmp_path):
    proc = run_predict(cwd=tmp_path)
    assert proc.returncode == 2 and error_lines(proc.stderr), proc.stderr


def test_help_lists_every_option_and_exit_code():
    from common import predict_cli
    proc = run_predict("--help")
    assert proc.returncode == 0 and not proc.stderr
    options = [s for a in predict_cli.get_args_parser()._actions for s in a.option_strings]
    assert [o for o in options if o not in proc.stdout] == []
    for code in (predict_cli.EXIT_OK, predict_cli.EXIT_PARTIAL, predict_cli.EXIT_FAILED):
        assert f"  {code}  " in proc.stdout


@pytest.mark.parametrize("case", ["missing", "corrupt", "wrong_task", "wrong_task_eyes"])
def test_bad_checkpoint_exits_2(tmp_path, photo, ckpts, case):
    bad = tmp_path / "bad.pt"
    if case == "corrupt":
        bad.write_bytes(b"PK\x03\x04 definitely not a torch file" * 20)
    extra = []
    if case == "missing":
        args, expect = ["--weights", tmp_path / "nope.pt"], str(tmp_path / "nope.pt")
    elif case == "corrupt":
        args, expect = ["--weights", bad], str(bad)
    elif case == "wrong_task":
        args, expect = ["--weights", ckpts["eyes"]], str(ckpts["eyes"])
    else:
        args, expect = ["--weights", ckpts["face"], "--eyes", "--eye-weights", ckpts["face"]], str(ckpts["face"])
    proc = run_predict("pic.jpg", *args, *extra, cwd=tmp_path)
    assert_clean(proc)
    assert proc.returncode == 2
    errs = error_lines(proc.stderr)
    assert len(errs) == 1 and expect in errs[0], proc.stderr
    assert not (tmp_path / "pic_landmarks.jpg").exists()


def test_absent_gpu_is_an_error(tmp_path, photo, ckpts):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = run_predict("pic.jpg", "--weights", ckpts["face"], "--device", "cuda", cwd=tmp_path)
    assert_clean(proc)
    assert proc.returncode == 2
    assert "no GPU" in proc.stderr


def test_outputs_are_not_overwritten_without_force(tmp_path, photo, ckpts):
    shutil.copy(photo, tmp_path / "second.jpg")
    (tmp_path / "pic_landmarks.jpg").write_bytes(b"earlier output")
    proc = run_predict("pic.jpg", "second.jpg", "--weights", ckpts["face"], cwd=tmp_path)
    assert_clean(proc)
    assert proc.returncode == 1
    errs = error_lines(proc.stderr)
    assert len(errs) == 1 and errs[0].startswith("error: pic_landmarks.jpg: already exists") and "--force" in errs[0]
    assert (tmp_path / "pic_landmarks.jpg").read_bytes() == b"earlier output"
    assert (tmp_path / "second_landmarks.jpg").is_file()
    # The JSON file is an output too.
    (tmp_path / "out.json").write_text("{}")
    proc = run_predict("pic.jpg", "--weights", ckpts["face"], "--json", "out.json", "--no-save", cwd=tmp_path)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    proc = run_predict("pic.jpg", "--weights", ckpts["face"], "--force", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pic_landmarks.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_unusual_images_work(tmp_path, ckpts):
    """16-bit, grayscale and RGBA PNGs and an EXIF-rotated JPEG are read upright;
    the upright portrait is what lets the detector find the face."""
    src = Image.open(portrait_path()).convert("RGB")
    gray = np.asarray(src.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(gray).save(tmp_path / "sixteen.png")  # mode I;16
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")
    src.convert("L").save(tmp_path / "gray.png")
    rgba = src.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(tmp_path / "rgba.png")
    # Stored lying on its side; EXIF orientation 6 says "turn 90 degrees clockwise to view".
    exif = Image.Exif()
    exif[0x0112] = 6
    src.rotate(90, expand=True).save(tmp_path / "exif.jpg", exif=exif.tobytes(), quality=95)
    names = ["sixteen.png", "gray.png", "rgba.png", "exif.jpg"]
    proc = run_predict(*names, "--weights", ckpts["face"], "--eyes", "--eye-weights", ckpts["eyes"],
                       "--json", "out.json", "--output", "out", cwd=tmp_path)
    assert_clean(proc)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    check_json_document(doc, eyes=True)
    by_name = {Path(im["path"]).name: im for im in doc["images"]}
    for n in names:
        im = by_name[n]
        assert (im["width"], im["height"]) == (src.width, src.height), n
        assert len(im["faces"]) == 1, n
        assert Path(tmp_path / im["output"]).is_file()
