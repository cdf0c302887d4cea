"""training/compare_release.sh with a fake ``python`` that records each call:
which evaluations it runs for each model kind, that finished ones are kept
on a rerun, and that bad arguments fail with a one-line error."""
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import REPO, models_script_env, needs_twins, run_logged_script  # noqa: E402

SCRIPT = REPO / "training" / "compare_release.sh"

FAKE_PYTHON = r'''#!/usr/bin/env bash
echo "$*" >> "$CALLS"
script=$1; shift
if [[ $script == inference/evaluate.py ]]; then
    while [[ $# -gt 0 ]]; do [[ $1 == --per-face ]] && echo "photo,face" > "$2"; shift; done
    echo "NME=3.50"
elif [[ $script == training/tools/compare_evals.py ]]; then
    echo "DIFF=-0.0100 first=$1 second=$2"
fi
'''


@pytest.fixture()
def env(tmp_path):
    return models_script_env(tmp_path, FAKE_PYTHON, ("face.pt", "face.int8.onnx", "eyes.pt", "eyes.int8.onnx"))


def run(env, *args):
    return run_logged_script(SCRIPT, env, *args)


@needs_twins
def test_face_candidate_is_scored_beside_the_shipped_files_on_four_measures(env):
    cand = env["MODELS"]
    proc, calls = run(env, cand)
    assert proc.returncode == 0, proc.stderr
    evals = [c for c in calls if c.startswith("inference/evaluate.py")]
    assert len(evals) == 8
    for who in ("runs/twins", cand):  # weights/face.pt is a final fit: the shipped side is its twin
        assert f"inference/evaluate.py --weights {who}/face.int8.onnx --data {env['XML']} --split heldout " \
               f"--boxes detector --refine --detector mtcnn --per-face" in "\n".join(evals)
        assert any(c.startswith(f"inference/evaluate.py --weights {who}/face.pt") and "--degrade tight" in c
                   for c in evals)
        assert any(c.startswith(f"inference/evaluate.py --weights {who}/face.int8.onnx --data {env['YT_TEST']}")
                   for c in evals)
    report = (Path(cand) / "compare-face" / "compare.txt").read_text()
    assert report.count("== ") == 4 and report.count("DIFF=") == 4
    assert re.search(rf"first={cand}/compare-face/shipped-pt-tight-[0-9a-f]{{12}}\.csv "
                     rf"second={cand}/compare-face/candidate-pt-tight-[0-9a-f]{{12}}\.csv", report)
    proc, calls = run(env, cand)  # again: every evaluation is kept, only the comparisons rerun
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in calls if c.startswith("inference/evaluate.py")]
    assert len([c for c in calls if c.startswith("training/tools/compare_evals.py")]) == 4
    assert not list((Path(cand) / "compare-face").glob("*.part"))


@needs_twins
def test_a_retrained_candidate_is_scored_anew_and_the_shipped_evaluations_are_kept(env):
    cand = Path(env["MODELS"])
    assert run(env, str(cand))[0].returncode == 0
    (cand / "face.pt").write_text("retrained")  # same folder, new contents: its old evaluations must not count
    proc, calls = run(env, str(cand))
    assert proc.returncode == 0, proc.stderr
    evals = [c for c in calls if c.startswith("inference/evaluate.py")]
    assert len(evals) == 2 and all(c.startswith(f"inference/evaluate.py --weights {cand}/face.pt") for c in evals)


@needs_twins
def test_eyes_candidate_takes_its_boxes_from_the_shipped_face_models_twin(env):
    proc, calls = run(env, env["MODELS"], "eyes")
    assert proc.returncode == 0, proc.stderr
    evals = [c for c in calls if c.startswith("inference/evaluate.py")]
    assert len(evals) == 6 and len([c for c in evals if f"--data {env['YT_TEST']}" in c]) == 2
    assert all("--face-weights runs/twins/face.int8.onnx" in c for c in evals if "--boxes detector" in c)


def test_bad_arguments_fail_with_one_line(env):
    proc, calls = run(env, env["MODELS"], "mouth")
    assert proc.returncode == 2 and "face, face192 or eyes" in proc.stderr and not calls
    proc, calls = run(env, env["MODELS"], "face192")  # no face192.pt in the candidate folder
    assert proc.returncode == 2 and "face192.pt not found" in proc.stderr and not calls
    proc, calls = run(env)
    assert proc.returncode != 0 and "usage" in proc.stderr and not calls


def test_a_final_fit_is_compared_with_its_twin_on_the_youtube_faces_test_frames_alone(env):
    proc, calls = run(dict(env, FINAL="1"), env["MODELS"])
    assert proc.returncode == 0, proc.stderr
    evals = [c for c in calls if c.startswith("inference/evaluate.py")]
    assert len(evals) == 2 and all(f"--data {env['YT_TEST']}" in c and "heldout" not in c for c in evals)
    proc, calls = run(dict(env, FINAL="yes"), env["MODELS"])
    assert proc.returncode == 2 and "FINAL must be 0 or 1" in proc.stderr and not calls


@needs_twins
def test_a_final_fit_eye_model_is_compared_on_the_youtube_faces_test_frames_alone(env):
    """Points 36-47 of those frames; the detector pass by face.int8.onnx's held-out-split twin, both sides."""
    proc, calls = run(dict(env, FINAL="1"), env["MODELS"], "eyes")
    evals = [c for c in calls if c.startswith("inference/evaluate.py")]
    assert proc.returncode == 0 and len(evals) == 2, proc.stderr
    assert [c.split()[2] for c in evals] == ["weights/eyes.int8.onnx", f"{env['MODELS']}/eyes.int8.onnx"]
    assert all(f"--data {env['YT_TEST']}" in c and "--face-weights runs/twins/face.int8.onnx" in c
               and "heldout" not in c for c in evals)


@needs_twins
def test_a_held_out_candidate_is_compared_with_the_twin_of_a_shipped_final_fit(env):
    """weights/face192.pt is a final fit (it trained on the held-out photos): a candidate trained with the
    held-out split is scored against its twin (model_files.sh, twin_dir), a final fit against weights/."""
    for name in ("face192.pt", "face192.int8.onnx"):
        (Path(env["MODELS"]) / name).write_text("")
    proc, calls = run(env, env["MODELS"], "face192")
    assert proc.returncode == 0, proc.stderr
    shipped = [c for c in calls if c.startswith("inference/evaluate.py") and env["MODELS"] not in c.split()[2]]
    assert len(shipped) == 4 and all(c.split()[2].startswith("runs/twins/face192.") for c in shipped), shipped
    proc, calls = run(dict(env, FINAL="1", OUT=env["MODELS"] + "/final"), env["MODELS"], "face192")
    assert proc.returncode == 0 and [c.split()[2] for c in calls if c.startswith("inference/evaluate.py")] == \
        ["weights/face192.int8.onnx", f"{env['MODELS']}/face192.int8.onnx"]
