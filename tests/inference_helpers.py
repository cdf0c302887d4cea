"""Shared helpers of the inference tests (kept out of conftest.py on purpose:
each test module imports what it needs)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
PREDICT = REPO / "inference" / "predict.py"

# Trained weights (released into weights/ by the lead); the environment
# variables point the tests at other checkpoints during development.
FACE_WEIGHTS = Path(os.environ.get("LANDMARK_TEST_FACE_WEIGHTS", REPO / "weights" / "face.pt"))
EYE_WEIGHTS = Path(os.environ.get("LANDMARK_TEST_EYE_WEIGHTS", REPO / "weights" / "eyes.pt"))

needs_face_weights = pytest.mark.skipif(
    not FACE_WEIGHTS.is_file(), reason=f"trained face model {FACE_WEIGHTS} not present (train it, "
                                       "or set LANDMARK_TEST_FACE_WEIGHTS)")
needs_eye_weights = pytest.mark.skipif(
    not EYE_WEIGHTS.is_file(), reason=f"trained eye model {EYE_WEIGHTS} not present (train it, "
                                      "or set LANDMARK_TEST_EYE_WEIGHTS)")


def portrait_path() -> str:
    """Grace Hopper's portrait bundled with matplotlib (public domain)."""
    from matplotlib import cbook
    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def make_random_checkpoint(path: Path, task: str, seed: int = 0) -> Path:
    """An untrained but well-formed checkpoint: enough to test the plumbing."""
    import torch
    from common import checkpoint as C
    from common.landmarks import EYE_INDICES, FACE_INDICES
    from common.model import build_model
    torch.manual_seed(seed)
    idx = FACE_INDICES if task == "face" else EYE_INDICES
    model = build_model(len(idx), "pip", 128)
    C.atomic_save({**C.describe(model, task, idx, 0.5, 0.25), "config": {}, "scores": {}, "epoch": 0,
                   "model": C.clean_state_dict(model.state_dict())}, str(path))
    return path


def run_predict(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """Run inference/predict.py in a fresh interpreter."""
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(PREDICT), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def check_json_document(doc: dict, eyes: bool = False) -> None:
    """Assert that ``doc`` has the documented shape (README.md, section JSON)."""
    def pair_list(v, n):
        assert isinstance(v, list) and len(v) == n, (type(v), len(v) if isinstance(v, list) else None)
        for p in v:
            assert isinstance(p, list) and len(p) == 2 and all(isinstance(c, (int, float)) for c in p)

    def face(f, video):
        assert set(f) >= {"box", "face_box", "score", "points"}
        for k in ("box", "face_box"):
            assert len(f[k]) == 4 and all(isinstance(c, (int, float)) for c in f[k])
            assert f[k][0] < f[k][2] and f[k][1] < f[k][3]
        assert f["score"] is None or isinstance(f["score"], (int, float))
        pair_list(f["points"], 68)
        if eyes:
            pair_list(f["eye_points"], 12)
            assert set(f["ears"]) == {"right", "left"}
            assert all(isinstance(v, (int, float)) and v >= 0 for v in f["ears"].values())
        else:
            assert "eye_points" not in f and "ears" not in f
        if video:
            assert isinstance(f["id"], int)
            if eyes:
                assert isinstance(f["blinks"], int)

    assert doc["format"] == "face-landmarks" and doc["version"] == 1
    assert isinstance(doc["refine"], bool) and isinstance(doc["flip_test"], bool)
    assert isinstance(doc["multi_crop"], bool)
    for key in ("images", "videos", "errors"):
        assert isinstance(doc[key], list)
    for im in doc["images"]:
        assert isinstance(im["path"], str) and im["width"] > 0 and im["height"] > 0
        assert im["output"] is None or isinstance(im["output"], str)
        for f in im["faces"]:
            face(f, False)
    for v in doc["videos"]:
        assert isinstance(v["path"], str) and v["width"] > 0 and v["fps"] > 0
        assert isinstance(v["smoothed"], bool)
        assert (v["blinks"] is not None) == eyes
        for i, fr in enumerate(v["frames"]):
            assert fr["index"] == i and fr["time"] >= 0
            for f in fr["faces"]:
                face(f, True)
    for e in doc["errors"]:
        assert set(e) == {"path", "error"}


def run_logged_script(script: Path, env: dict, *args) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run a bash ``script`` whose ``python`` is a stand-in that appends each
    call's arguments to the file ``env["CALLS"]``; returns the process and
    the calls, one string each."""
    calls = Path(env["CALLS"])
    calls.unlink(missing_ok=True)
    proc = subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=60)
    return proc, calls.read_text().splitlines() if calls.exists() else []


def stand_in_python(tmp_path: Path, script_text: str) -> str:
    """Write ``script_text`` as an executable ``python`` in ``tmp_path/bin``
    (skipping the test where bash is missing); returns a ``PATH`` that finds
    it first."""
    import shutil
    if shutil.which("bash") is None:
        pytest.skip("bash not available")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(script_text)
    (bin_dir / "python").chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def models_script_env(tmp_path: Path, fake_python: str, model_files: tuple[str, ...]) -> dict:
    """The environment for a training/*.sh script that scores a folder of
    models (compare_release.sh, card_figures.sh): ``fake_python`` as its
    ``python``, empty ``model_files`` in ``tmp_path/release`` (``MODELS``),
    empty data files (``XML``, ``YT_TEST``) and the calls log (``CALLS``)."""
    path = stand_in_python(tmp_path, fake_python)
    models = tmp_path / "release"
    models.mkdir()
    for name in model_files:
        (models / name).write_text("")
    for name in ("labels.xml", "test_frames.csv"):
        (tmp_path / name).write_text("")
    return {**os.environ, "PATH": path, "CALLS": str(tmp_path / "calls.txt"), "XML": str(tmp_path / "labels.xml"),
            "YT_TEST": str(tmp_path / "test_frames.csv"), "MODELS": str(models)}


def interrupting_landmarker(on_batch: int):
    """A :class:`common.predictor.FaceLandmarker` whose ``on_batch``-th
    landmark batch raises KeyboardInterrupt (a Ctrl-C), with one image per
    batch; monkeypatch it in as ``common.predictor.FaceLandmarker``."""
    from common import predictor

    class Interrupting(predictor.FaceLandmarker):
        calls = 0

        def landmarks_for_images(self, items, *args, **kwargs):
            Interrupting.calls += 1
            if Interrupting.calls == on_batch:
                raise KeyboardInterrupt
            return super().landmarks_for_images(items, *args, **kwargs)

        def iter_landmarks(self, sources, workers=2, batch_faces=16, colour="rgb", keep_rgb=False):
            return super().iter_landmarks(sources, workers, 1, colour, keep_rgb)  # one image per batch

    return Interrupting


def _has_twins() -> bool:
    """Whether this clone holds the commits that shipped the final fits' twins (training/model_files.sh, TWINS)."""
    import re
    text = (REPO / "training" / "model_files.sh").read_text()
    commits = re.findall(r"\[\w+\]=([0-9a-f]+)", text.split("declare -A TWINS=", 1)[1].split("\n", 1)[0])
    return bool(commits) and all(subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{c}^{{commit}}"],
                                                capture_output=True).returncode == 0 for c in commits)


# For tests of scripts that score a final fit's twin: they need the git history that holds it.
needs_twins = pytest.mark.skipif(not _has_twins(), reason="needs the git history that holds the final fits' twins "
                                                          "(git fetch --unshallow)")
