"""training/pseudo_student.sh: labels the training frames once (never the test
frames), trains the student with the labels' own mirror offset, resumes, and
releases it like recipe.sh. ``python`` is the stand-in of test_recipe.py."""
from __future__ import annotations

import json

from test_recipe import env  # noqa: F401  (the fixture: a logging stand-in for python)
from inference_helpers import REPO, run_logged_script

SCRIPT = REPO / "training" / "pseudo_student.sh"


def _run(env, *args):  # noqa: F811
    return run_logged_script(SCRIPT, env, *args)


def test_labels_trains_resumes_and_releases(env, tmp_path):  # noqa: F811
    out = tmp_path / "ps"
    env = {**env, "OUT": str(out), "TEACHER": "teacher.pt", "INIT": "start.pt"}  # default: model_files.sh's twin_dir (test_card_figures)
    proc, calls = _run(env)
    # the stand-in writes no labels: the script stops, saying why
    assert proc.returncode == 2 and "mirror_offset_photo_px" in proc.stderr
    assert calls[0].startswith(f"training/tools/pseudo_label.py --data {env['YT']} --weights teacher.pt "
                               f"--flip-test --max-frames 1200 --out {out}/ytf_train_300w.csv")
    assert "test_frames" not in calls[0]
    (out / "ytf_train_300w.csv").write_text("")
    (out / "ytf_train_300w.csv.json").write_text(json.dumps({"mirror_offset_photo_px": 0.358}))
    proc, calls = _run(env, "3")
    assert proc.returncode == 0, proc.stderr
    assert not any(c.startswith("training/tools/pseudo_label.py") for c in calls)  # labels kept
    train = calls[0]
    assert train.startswith(f"training/face/cpu/train.py --data {env['XML']} {out}/ytf_train_300w.csv "
                            "--val-from labels.xml --val-fraction 0.2 --init start.pt")
    assert "--mirror-offset 0.99 0.358 --epochs 3" in train and "--lr 1e-3 --ema 0.99" in train
    assert calls[1].startswith(f"training/tools/release_weights.py {out}/face/1/last.pt")
    assert calls[-1].startswith(f"inference/export_onnx.py --weights {out}/release/student.pt --int8")
    proc, calls = _run(env, "3")
    assert proc.returncode == 0, proc.stderr
    assert calls[0] == f"training/face/cpu/train.py --resume {out}/face/1 --epochs 3"


def test_filter_rate_and_control_run(env, tmp_path):  # noqa: F811
    out = tmp_path / "ps"
    proc, calls = _run({**env, "OUT": str(out), "MAX_DISAGREEMENT": "2.5", "FRAMES": "0"})
    assert "--max-frames 0 --max-disagreement 2.5 --out" in calls[0]
    # the control: 300-W alone, its own offset, the same settings, nothing labelled
    ctl = tmp_path / "ctl"
    proc, calls = _run({**env, "OUT": str(ctl), "CONTROL": "1", "LR": "3e-4", "TRAIN_ARGS": "--amp --seed 1"}, "8")
    assert proc.returncode == 0, proc.stderr
    assert not any(c.startswith("training/tools/pseudo_label.py") for c in calls)
    train = calls[0]
    assert train.startswith(f"training/face/cpu/train.py --data {env['XML']} --val-from labels.xml")
    assert "--lr 3e-4 --ema 0.99 --mirror-offset 0.99 --epochs 8" in train and train.endswith("--amp --seed 1")
