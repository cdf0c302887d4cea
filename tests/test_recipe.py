"""training/recipe.sh: the order of its stages, skipping finished ones and
resuming an interrupted one. ``python`` is replaced by a stand-in that logs
its arguments and, for train.py, writes what a finished run leaves behind
(log.csv up to the requested epoch and last.pt), so the shell logic is
checked without training anything."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import REPO, run_logged_script, stand_in_python  # noqa: E402

RECIPE = REPO / "training" / "recipe.sh"

FAKE_PYTHON = r'''#!/usr/bin/env bash
echo "$*" >> "$CALLS"
script=$1; shift
[[ $script == training/*/train.py ]] || exit 0
task=$(basename "$(dirname "$(dirname "$script")")")
epochs= runs= resume=
while [[ $# -gt 0 ]]; do
    case $1 in
        --epochs) epochs=$2; shift;;
        --runs-dir) runs=$2; shift;;
        --resume) resume=$2; shift;;
    esac
    shift
done
dir=${resume:-$runs/$task/1}
mkdir -p "$dir"
printf 'epoch,train_loss\n%s,0.1\n' "$epochs" > "$dir/log.csv"
touch "$dir/last.pt" "$dir/best.pt"
'''


@pytest.fixture()
def env(tmp_path):
    path = stand_in_python(tmp_path, FAKE_PYTHON)
    for name in ("labels.xml", "frames.csv"):
        (tmp_path / name).write_text("")
    return {**os.environ, "PATH": path, "CALLS": str(tmp_path / "calls.txt"),
            "RUNS": str(tmp_path / "runs"), "XML": str(tmp_path / "labels.xml"), "YT": str(tmp_path / "frames.csv")}


def trains_of(calls: list[str]) -> list[str]:
    """The training runs among the logged calls."""
    return [c for c in calls if c.split()[0].endswith("/train.py")]


def released_of(calls: list[str]) -> list[str]:
    """The release steps: the tools in training/tools/ and the ONNX export."""
    return [c for c in calls if c.startswith(("training/tools/", "inference/"))]


def run_recipe(env, *args) -> tuple[subprocess.CompletedProcess, list[str]]:
    return run_logged_script(RECIPE, env, *args)


def test_recipe_runs_the_stages_in_order_then_skips_them(env):
    runs = env["RUNS"]
    proc, calls = run_recipe(env, "cuda")
    assert proc.returncode == 0, proc.stderr
    trains = trains_of(calls)
    # the face stages first (1, 2a, 2b), so that the face model is ready before the eye stages (3, 4)
    assert [c.split()[0] for c in trains] == ["training/face/cuda/train.py", "training/face/cuda/train.py",
                                              "training/face/cuda/train.py", "training/eyes/cuda/train.py",
                                              "training/eyes/cuda/train.py"]
    assert "--epochs 48" in trains[0] and f"--runs-dir {runs}/mixed" in trains[0]
    assert "--mirror-offset 0.99 0.73" in trains[0]  # the annotation's offset, one value per data set
    # the two last-stage face runs, from the same stage-1 model
    assert f"--init {runs}/mixed/face/1/last.pt" in trains[1] and "--lr 1e-3 --mirror-offset 0.99 --ema 0.99" in trains[1]
    assert f"--init {runs}/mixed/face/1/last.pt" in trains[2] and "--lr 1e-3 --no-mirror --ema 0.99" in trains[2]
    assert f"--runs-dir {runs}/300w-nomirror" in trains[2]
    assert f"--init {runs}/mixed/face/1/last.pt" in trains[3] and "--epochs 8" in trains[3]
    assert "--mirror-offset 0.99 0.73" in trains[3]
    assert f"--init {runs}/mixed/eyes/1/last.pt" in trains[4] and "--epochs 10" in trains[4]
    assert "--lr 2e-4 --no-mirror --ema 0.99" in trains[4]
    assert env["YT"] not in trains[1] + trains[2] + trains[4]  # stages 2a, 2b and 4: the 300-W faces alone
    released = released_of(calls)
    assert len(released) == 6 and f"{runs}/release/face.int8" not in " ".join(released)
    # the released face model is the weight average of the two last-stage runs
    assert released[0].startswith(f"training/tools/release_weights.py {runs}/300w/face/1/last.pt "
                                  f"{runs}/300w-nomirror/face/1/last.pt {runs}/release/face.plain.pt")
    # each released model records its annotation offset (on training faces) before its int8 export
    i = next(k for k, c in enumerate(released) if c.startswith("training/tools/mirror_offset.py"))
    assert f"--write {runs}/release/face.pt" in released[i] and "--split train" in released[i]
    assert released[i + 1].startswith(f"inference/export_onnx.py --weights {runs}/release/face.pt")
    assert any(c.startswith(f"inference/export_onnx.py --weights {runs}/release/eyes.pt --int8") for c in released)

    proc, calls = run_recipe(env, "cuda")  # again: every stage is finished
    assert proc.returncode == 0, proc.stderr
    assert not trains_of(calls)
    assert proc.stdout.count(": done") == 5


def test_recipe_resumes_an_interrupted_stage(env):
    run_recipe(env)
    log = Path(env["RUNS"]) / "300w" / "face" / "1" / "log.csv"
    log.write_text("epoch,train_loss\n10,0.1\n")  # stopped after epoch 10 of 24
    proc, calls = run_recipe(env)
    assert proc.returncode == 0, proc.stderr
    trains = trains_of(calls)
    assert trains == [f"training/face/cpu/train.py --resume {env['RUNS']}/300w/face/1 --epochs 24"]
    log.write_text("epoch,train_loss\n10,0.1\n")  # machine settings reach the resumed stage too
    proc, calls = run_recipe({**env, "TRAIN_ARGS": "--channels-last"})
    trains = trains_of(calls)
    assert trains == [f"training/face/cpu/train.py --resume {env['RUNS']}/300w/face/1 --epochs 24 --channels-last"]


def test_recipe_rejects_bad_platform_and_missing_data(env):
    proc, calls = run_recipe(env, "gpu")
    assert proc.returncode == 2 and "cpu, cuda or rocm" in proc.stderr and not calls
    proc, calls = run_recipe({**env, "XML": "/nonexistent/labels.xml"})
    assert proc.returncode == 2 and "/nonexistent/labels.xml not found" in proc.stderr and not calls
    for bad in ("150", "big"):
        proc, calls = run_recipe({**env, "LAST_SIZE": bad})
        assert proc.returncode == 2 and "LAST_SIZE must be a multiple of 16" in proc.stderr and not calls
    for bad in ("0", "3", "two"):
        proc, calls = run_recipe({**env, "LAST_RUNS": bad})
        assert proc.returncode == 2 and "LAST_RUNS must be 1 or 2" in proc.stderr and not calls


def test_last_runs_1_releases_the_mirrored_last_stage_run_alone(env):
    runs = env["RUNS"]
    proc, calls = run_recipe({**env, "LAST_SIZE": "192", "LAST_RUNS": "1"})
    assert proc.returncode == 0, proc.stderr
    trains = trains_of(calls)
    assert len(trains) == 4 and "--no-mirror" not in trains[1] and "--input-size 192" in trains[1]
    assert f"--runs-dir {runs}/300w-192" in trains[1] and "300w-nomirror" not in " ".join(trains)
    released = released_of(calls)
    assert released[0] == (f"training/tools/release_weights.py {runs}/300w-192/face/1/last.pt "
                           f"{runs}/release/face192.plain.pt --force")


def test_train_args_reach_every_fresh_stage_but_not_a_resume(env):
    proc, calls = run_recipe({**env, "TRAIN_ARGS": "--amp --threads 2"})
    assert proc.returncode == 0, proc.stderr
    trains = trains_of(calls)
    fresh = [c for c in trains if "--resume" not in c]
    assert len(fresh) == 5 and all("--amp --threads 2" in c for c in fresh)
    assert all("--amp" not in c for c in trains if "--resume" in c)  # a resumed run keeps its own config


def test_mirror_offsets_can_be_set_for_other_data(env):
    proc, calls = run_recipe({**env, "OFF_XML": "0", "OFF_YT": "0.5"})
    assert proc.returncode == 0, proc.stderr
    trains = trains_of(calls)
    assert "--mirror-offset 0 0.5" in trains[0] and "--mirror-offset 0 --ema" in trains[1]


@pytest.mark.parametrize("size", ["160", "192"])
def test_last_size_trains_and_releases_the_larger_face_model(env, size):
    runs = env["RUNS"]
    proc, calls = run_recipe({**env, "LAST_SIZE": size})
    assert proc.returncode == 0, proc.stderr
    trains = trains_of(calls)
    assert "--input-size 128" in trains[0]  # stage 1 stays at 128 px
    for t, d in ((trains[1], f"300w-{size}"), (trains[2], f"300w-nomirror-{size}")):
        assert f"--input-size {size}" in t and f"--runs-dir {runs}/{d}" in t
    assert "--input-size" not in trains[3] + trains[4]  # the eye model keeps its stage-1 size
    released = released_of(calls)
    assert released[0].startswith(f"training/tools/release_weights.py {runs}/300w-{size}/face/1/last.pt "
                                  f"{runs}/300w-nomirror-{size}/face/1/last.pt {runs}/release/face{size}.plain.pt")
    assert any(f"--write {runs}/release/face{size}.pt" in c for c in released)
    assert any(c.startswith(f"inference/export_onnx.py --weights {runs}/release/face{size}.pt --int8")
               for c in released)


def test_teacher_distils_into_both_last_stage_face_runs_in_their_own_folders(env, tmp_path):
    runs, teacher = env["RUNS"], tmp_path / "face192.pt"
    teacher.write_text("")
    proc, calls = run_recipe({**env, "TEACHER": str(teacher)})
    assert proc.returncode == 0, proc.stderr
    trains = trains_of(calls)
    with_teacher = [c for c in trains if f"--teacher {teacher} --teacher-weight 0.5" in c]
    assert with_teacher == trains[1:3]                      # 2a and 2b, not stage 1 or the eyes
    assert f"--runs-dir {runs}/300w-distil" in trains[1] and f"--runs-dir {runs}/300w-nomirror-distil" in trains[2]
    proc, calls = run_recipe({**env, "TEACHER": str(tmp_path / "missing.pt")})
    assert proc.returncode == 2 and "TEACHER=" in proc.stderr and not calls


def test_stage1_epochs_changes_stage_1_alone(env):
    proc, calls = run_recipe({**env, "STAGE1_EPOCHS": "24"})
    assert proc.returncode == 0, proc.stderr
    trains = trains_of(calls)
    assert "--epochs 24" in trains[0] and f"--runs-dir {env['RUNS']}/mixed" in trains[0]
    assert len(trains) == 5 and all("--epochs 24" in c for c in trains[1:3])  # 2a, 2b keep theirs
    assert all("--epochs 48" not in c for c in trains)
    proc, calls = run_recipe({**env, "STAGE1_EPOCHS": "many"})
    assert proc.returncode == 2 and "STAGE1_EPOCHS must be" in proc.stderr and not calls


def test_final_fit_trains_every_stage_on_every_face_in_its_own_folders(env):
    proc, calls = run_recipe({**env, "FINAL": "1"})
    assert proc.returncode == 0, proc.stderr
    trains = [c for c in calls if c.split()[0].endswith("/train.py")]
    assert len(trains) == 5 and all("--val-fraction 0" in c and "--val-from" not in c for c in trains)
    assert all(f"--runs-dir {env['RUNS']}/" in c for c in trains if "--runs-dir" in c)
    proc, calls = run_recipe({**env, "FINAL": "yes"})
    assert proc.returncode == 2 and "FINAL must be 0 or 1" in proc.stderr and not calls



def test_eyes_0_trains_and_releases_the_face_model_alone(env, tmp_path):
    runs, teacher = env["RUNS"], tmp_path / "face192.pt"
    teacher.write_text("")
    proc, calls = run_recipe({**env, "EYES": "0", "TEACHER": str(teacher)})
    assert proc.returncode == 0, proc.stderr
    trains = trains_of(calls)
    assert len(trains) == 3 and all(c.startswith("training/face/") for c in trains)
    released = " ".join(released_of(calls))
    assert f"--write {runs}/release/face.pt" in released and f"{runs}/release/eyes" not in released
    assert not (Path(runs) / "300w" / "eyes").exists()
    proc, calls = run_recipe({**env, "EYES": "no"})
    assert proc.returncode == 2 and "EYES must be 0 or 1" in proc.stderr and not calls


def test_face_0_trains_and_releases_the_eye_model_alone_from_eyes_init(env, tmp_path):
    runs, face = env["RUNS"], tmp_path / "face.pt"
    face.write_text("")
    proc, calls = run_recipe({**env, "FACE": "0", "EYES_INIT": str(face), "FINAL": "1"})
    assert proc.returncode == 0, proc.stderr
    trains = trains_of(calls)
    assert len(trains) == 2 and all(c.startswith("training/eyes/") and "--val-fraction 0" in c for c in trains)
    assert f"--init {face}" in trains[0]
    released = " ".join(released_of(calls))
    assert f"--write {runs}/release/eyes.pt" in released and "release/face" not in released
    assert "release/eyes.pt" in proc.stdout.splitlines()[-1]
    for bad, message in (({"FACE": "0"}, "set EYES_INIT="), ({"FACE": "0", "EYES": "0"}, "nothing to train"),
                         ({"FACE": "no"}, "FACE must be 0 or 1")):
        proc, calls = run_recipe({**env, **bad})
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1 and not calls
