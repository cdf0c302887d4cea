"""training/tools/pseudo_label.py on a few generated frames with an untrained teacher:
the written CSV reads back through common.datasets, the sidecar names the
teacher, outputs are never overwritten silently, and test splits are refused."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from inference_helpers import REPO, make_random_checkpoint
from synthetic import make_face, save_image, write_keypoints_csv


def _script():
    spec = importlib.util.spec_from_file_location("pseudo_label", REPO / "training" / "tools" / "pseudo_label.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Four generated frames as a YouTube-Faces-like CSV (images in ``training/``), and a teacher."""
    root = tmp_path_factory.mktemp("ytf")
    rng = np.random.default_rng(3)
    rows = []
    for i in range(4):
        img, pts = make_face(rng, 72, 72)
        save_image(str(root / "training" / f"Clip_{i}_0{i}.png"), img)
        rows.append((f"Clip_{i}_0{i}.png", pts))
    csv_path = root / "training_frames_keypoints.csv"
    write_keypoints_csv(str(csv_path), rows)
    write_keypoints_csv(str(root / "test_frames_keypoints.csv"), rows)
    teacher = make_random_checkpoint(root / "teacher.pt", "face")
    return {"root": root, "csv": str(csv_path), "teacher": str(teacher)}


def _run(mod, *argv):
    """The script as its ``__main__`` runs it (common/cli.py's run_script); its exit code."""
    from common.cli import run_script
    saved, sys.argv = sys.argv, ["pseudo_label.py", *map(str, argv)]
    try:
        run_script(mod.main, mod.get_args_parser())
    except SystemExit as stop:
        return stop.code
    finally:
        sys.argv = saved


def test_labels_read_back_with_sidecar(frames, tmp_path):
    from common.readers import read_datasets
    mod = _script()
    out = str(tmp_path / "sub" / "pseudo.csv")
    assert _run(mod, "--data", frames["csv"], "--out", out, "--weights", frames["teacher"],
                "--flip-test", "--device", "cpu") == 0
    recs = read_datasets([out])   # absolute image paths: the CSV's own folder name does not matter
    assert len(recs) == 4
    assert all(os.path.isfile(r.image_path) for r in recs)
    assert recs[0].image_path == str(frames["root"] / "training" / "Clip_0_00.png")
    assert recs[0].points.shape == (68, 2) and np.all(np.isfinite(recs[0].points))
    assert len({r.group for r in recs}) == 4   # one clip per frame here, named after the image
    doc = json.load(open(out + ".json"))
    sha = hashlib.sha256(open(frames["teacher"], "rb").read()).hexdigest()
    assert doc["teachers"][0]["sha256"] == sha
    assert doc["settings"]["flip_test"] is True
    assert doc["frames_total"] == doc["frames_kept"] == 4
    assert len(doc["frames"]) == 4 and all(f["disagreement_pct"] >= 0 for f in doc["frames"])
    assert "date" in doc and "mirror_offset_photo_px" in doc

    # never overwritten without --force
    assert _run(mod, "--data", frames["csv"], "--out", out, "--weights", frames["teacher"], "--device", "cpu") == 2

    # the threshold drops exactly the frames above it
    dis = sorted(f["disagreement_pct"] for f in doc["frames"])
    limit = (dis[1] + dis[2]) / 2
    assert _run(mod, "--data", frames["csv"], "--out", out, "--weights", frames["teacher"], "--flip-test",
                "--max-disagreement", str(limit), "--force", "--device", "cpu") == 0
    assert len(read_datasets([out])) == 2
    doc = json.load(open(out + ".json"))
    assert doc["frames_kept"] == 2 and sum(f["kept"] for f in doc["frames"]) == 2


def test_refuses_the_test_split(frames, tmp_path, capsys):
    mod = _script()
    out = tmp_path / "t.csv"
    test_csv = str(frames["root"] / "test_frames_keypoints.csv")
    assert _run(mod, "--data", test_csv, "--out", str(out), "--weights", frames["teacher"],
                "--device", "cpu") == 2
    assert "test split" in capsys.readouterr().err
    assert not out.exists()


def test_batched_labels_match_predict_boxes_with_refine(frames):
    """The batched teacher gives what predict.py's path gives one image at a time."""
    from common.readers import read_datasets
    from common.device import select_device
    from common.images import read_image
    from common.landmarks import landmark_box
    from common.landmark_model import LandmarkModel, refined_boxes
    mod = _script()
    m = LandmarkModel(frames["teacher"], "face", select_device("cpu"))
    recs = read_datasets([frames["csv"]])
    grays = [read_image(r.image_path, gray=True) for r in recs]
    boxes = [landmark_box(r.points) for r in recs]
    for flip in (False, True):
        labels, dis, _ = mod.label_batch([m], grays, boxes, flip)
        for g, b, lab in zip(grays, boxes, labels):
            want = m.predict_boxes(g, refined_boxes(m, g, [b]), flip=flip)[0]
            np.testing.assert_allclose(lab, want, atol=1e-3)
    assert np.all(dis >= 0)


def test_max_frames_spreads_the_subset(frames, tmp_path):
    from common.readers import read_datasets
    mod = _script()
    out = str(tmp_path / "two.csv")
    assert _run(mod, "--data", frames["csv"], "--out", out, "--weights", frames["teacher"],
                "--max-frames", "2", "--threads", "1", "--device", "cpu") == 0
    names = [os.path.basename(r.image_path) for r in read_datasets([out])]
    assert names == ["Clip_0_00.png", "Clip_3_03.png"]   # first and last: evenly spread
