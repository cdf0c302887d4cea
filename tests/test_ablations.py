"""training/ablations.sh with a stand-in ``python`` that records each call:
the datasize mode trains the same last stage on all the training faces and
on 776 of them, into OUT, and refuses a missing stage-1 model in one line."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import REPO, run_logged_script, stand_in_python  # noqa: E402

SCRIPT = REPO / "training" / "ablations.sh"

STAND_IN = r'''#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [[ $1 == -c ]]; then echo --amp; fi
if [[ $1 == training/face/cpu/train.py ]]; then echo "run folder: $OUT/face/1"; fi
'''


def _env(tmp_path):
    return {**os.environ, "PATH": stand_in_python(tmp_path, STAND_IN), "CALLS": str(tmp_path / "calls.txt"),
            "OUT": str(tmp_path / "ablations")}


def test_datasize_trains_the_last_stage_on_all_faces_and_on_776(tmp_path):
    env = _env(tmp_path)
    init = tmp_path / "stage1.pt"
    init.write_text("")
    proc, calls = run_logged_script(SCRIPT, env, "datasize", str(init))
    assert proc.returncode == 0, proc.stderr
    trains = [c for c in calls if c.startswith("training/face/cpu/train.py")]
    assert len(trains) == 2
    for c in trains:
        assert f"--init {init} --input-size 192" in c and "--amp" in c
        assert f"--runs-dir {tmp_path}/ablations/datasize" in c
    assert "--max-faces" not in trains[0] and trains[1].endswith("--max-faces 776")
    assert (tmp_path / "ablations" / "datasize" / "776 of 970 faces.log").exists()


def test_datasize_without_a_stage_1_model_fails_in_one_line(tmp_path):
    env = _env(tmp_path)
    proc, calls = run_logged_script(SCRIPT, env, "datasize")
    assert proc.returncode != 0 and "usage" in proc.stderr
    proc, calls = run_logged_script(SCRIPT, env, "datasize", str(tmp_path / "missing.pt"))
    assert proc.returncode == 2 and "missing.pt not found" in proc.stderr
    assert not [c for c in calls if "train.py" in c]
