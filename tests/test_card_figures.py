"""training/card_figures.sh with a fake ``python`` that records each call:
which evaluate.py cells it runs for each model kind, that their outputs stay
beside each other, that finished cells are kept on a rerun, and that bad
arguments fail with a one-line error."""
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import REPO, models_script_env, needs_twins, run_logged_script  # noqa: E402

SCRIPT = REPO / "training" / "card_figures.sh"

FAKE_PYTHON = r'''#!/usr/bin/env bash
echo "$*" >> "$CALLS"
[[ -n ${FAIL_ON:-} && $* == *"$FAIL_ON"* ]] && exit 1
echo "progress" >&2
echo "NME=3.50 median=3.10 FR8=1.3 FR10=0.4 AUC8=56.5 n=237"
'''


@pytest.fixture()
def env(tmp_path):
    env = models_script_env(tmp_path, FAKE_PYTHON, ("face192.pt", "face192.int8.onnx", "eyes.pt", "eyes.int8.onnx"))
    return {**env, "OUT": str(Path(env["MODELS"]) / "card")}  # default: runs/card-figures/ in the repository


def test_face_model_cells_cover_the_card_rows_and_are_kept_on_a_rerun(env):
    models, xml = env["MODELS"], env["XML"]
    proc, calls = run_logged_script(SCRIPT, env, models, "face192")
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 36 and all(c.startswith("inference/evaluate.py --weights ") for c in calls)
    assert (f"inference/evaluate.py --weights {models}/face192.int8.onnx --data {xml} --split heldout "
            f"--boxes detector --refine --detector mtcnn --ced {models}/card/heldout-int8-detector.png") \
        in "\n".join(calls)
    for setting in ("--degrade tight", "--multi-crop --flip-test", "--points eyes", "--flip-test"):
        assert any(setting in c for c in calls), setting
    lines = (Path(models) / "card" / "figures.txt").read_text().splitlines()
    assert len(lines) == 36 and len({line.split()[0] for line in lines}) == 36  # one file per cell
    assert lines[0] == "heldout-pt-landmarks NME=3.50 median=3.10 FR8=1.3 FR10=0.4 AUC8=56.5 n=237"
    proc, calls = run_logged_script(SCRIPT, env, models, "face192")  # again: every cell is kept
    assert proc.returncode == 0 and not calls and proc.stdout.count("NME=") == 36


def test_an_interrupted_cell_is_run_again_and_nothing_half_written_is_kept(env):
    models = env["MODELS"]
    proc, _ = run_logged_script(SCRIPT, {**env, "FAIL_ON": "--degrade blur"}, models, "face192")
    assert proc.returncode != 0
    card = Path(models) / "card"
    assert not (card / "figures.txt").exists() and not (card / "heldout-pt-blur.txt").exists()
    proc, calls = run_logged_script(SCRIPT, env, models, "face192")
    assert proc.returncode == 0 and all("--degrade" in c for c in calls) and len(calls) == 9


@needs_twins
def test_eye_model_cells_take_their_boxes_from_the_shipped_face_models_twin(env):
    proc, calls = run_logged_script(SCRIPT, env, env["MODELS"], "eyes")
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 11
    assert all("--face-weights runs/twins/face.int8.onnx" in c for c in calls if "--boxes detector" in c)


def test_bad_arguments_fail_with_one_line(env):
    proc, calls = run_logged_script(SCRIPT, env, env["MODELS"], "mouth")
    assert proc.returncode == 2 and "face, face192 or eyes" in proc.stderr and not calls
    proc, calls = run_logged_script(SCRIPT, env, env["MODELS"], "face")  # no face.pt there
    assert proc.returncode == 2 and "face.pt not found" in proc.stderr and not calls
    proc, calls = run_logged_script(SCRIPT, env)
    assert proc.returncode != 0 and "usage" in proc.stderr and not calls


def test_a_final_fit_gets_its_youtube_cells_alone(env):
    proc, calls = run_logged_script(SCRIPT, {**env, "FINAL": "1"}, env["MODELS"], "face192")
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 11 and not any("--split heldout" in c for c in calls)
    assert all(f"--data {env['XML']}" not in c for c in calls)
    lines = (Path(env["MODELS"]) / "card" / "figures.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines][:3] == ["youtube-pt-landmarks", "youtube-pt-detector", "youtube-int8-detector"]
    proc, calls = run_logged_script(SCRIPT, {**env, "FINAL": "yes"}, env["MODELS"], "face192")
    assert proc.returncode == 2 and "FINAL must be 0 or 1" in proc.stderr and not calls


@needs_twins
def test_a_final_fit_eye_model_gets_its_youtube_cells_alone(env):
    proc, calls = run_logged_script(SCRIPT, {**env, "FINAL": "1"}, env["MODELS"], "eyes")
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 2 and all(f"--data {env['YT_TEST']}" in c and "heldout" not in c for c in calls)


def _twin_dir(cwd, commit):
    return subprocess.run(["bash", "-c", f"source {REPO}/training/model_files.sh; TWINS=([face192]={commit}); "
                          "twin_dir face192; twin_dir face"], cwd=cwd, capture_output=True, text=True)


def test_twin_dir_takes_a_final_fits_twin_from_the_git_history(tmp_path):
    """model_files.sh's twin_dir: weights/ for a model that is not a final fit; for one that is, its twin's
    files as the commit that shipped them held them, in runs/twins/ (kept for the next call); without that
    history, one line and exit 2."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "weights").mkdir()
    for name, text in (("face192.pt", "twin"), ("face192.int8.onnx", "twin int8")):
        (tmp_path / "weights" / name).write_text(text)
    subprocess.run([*git, "add", "weights"], check=True)
    subprocess.run([*git, "commit", "-qm", "twin"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "weights" / "face192.pt").write_text("final fit")
    proc = _twin_dir(tmp_path, commit)
    assert proc.returncode == 0 and proc.stdout.split() == ["runs/twins", "weights"], proc.stderr
    assert (tmp_path / "runs/twins/face192.pt").read_text() == "twin"
    assert (tmp_path / "runs/twins/face192.int8.onnx").read_text() == "twin int8"
    (tmp_path / "runs/twins/face192.pt").write_text("kept")
    assert _twin_dir(tmp_path, commit).returncode == 0 and (tmp_path / "runs/twins/face192.pt").read_text() == "kept"
    (tmp_path / "runs/twins/face192.pt").unlink()
    proc = _twin_dir(tmp_path, "0" * 40)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "git fetch --unshallow" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "runs/twins").iterdir()) == ["face192.int8.onnx"]  # nothing half-written


def test_twin_sh_prints_an_absolute_folder_from_anywhere(tmp_path):
    """training/twin.sh NAME, run from another folder: the repository's own folder, absolute; a bad name: one line, exit 2."""
    proc = subprocess.run(["bash", f"{REPO}/training/twin.sh", "eyes"], cwd=tmp_path, capture_output=True, text=True)
    folder = Path(proc.stdout.strip())
    assert proc.returncode == 0 and folder.is_absolute() and folder.resolve() == (REPO / "weights").resolve(), proc.stderr
    proc = subprocess.run(["bash", f"{REPO}/training/twin.sh", "nose"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and not proc.stdout
