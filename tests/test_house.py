"""The house rules a clone shows: the model card's shape and length, and no
outputs (profiles, exports, runs) in the repository or offered to git."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from conftest import REPO_ROOT

CARD = os.path.join(REPO_ROOT, "weights", "README.md")
CARD_MAX_LINES = 220
CARD_ORDER = ["Model details", "Intended use", "Data", "Training recipe", "Evaluation", "Speed", "Limitations",
              "Ablations"]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", REPO_ROOT, *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")


def test_model_card_is_short_and_in_model_card_order():
    text = open(CARD, encoding="utf-8").read()
    assert text.count("\n") <= CARD_MAX_LINES, f"weights/README.md has {text.count(chr(10))} lines"
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert [next(k for k in CARD_ORDER if s.startswith(k)) for s in sections] == CARD_ORDER, sections
    summary = text.split("\n## Ablations\n", 1)[1]
    levers = [line for line in summary.splitlines() if line.startswith("- ")]
    assert levers and all(len(line) < 200 for line in levers), [line for line in levers if len(line) >= 200]
    assert "|" not in summary, "the full ablation rows belong in docs/ablations.md"


def test_no_profiles_or_exports_tracked_and_outputs_ignored():
    tracked = _git("ls-files").split()
    assert not [f for f in tracked if re.search(r"profile.*\.json$|\.pt\.trace\.json$", f)]
    onnx = {f for f in tracked if f.endswith(".onnx")}
    assert onnx <= {f"weights/{m}.int8.onnx" for m in ("face", "face192", "eyes")}, onnx
    outputs = ["weights/face.onnx", "out/face.onnx", "onnxruntime_profile__2026-01-01_00-00-00_0.json",
               "runs/face/1/best.pt", "out/smoke/face/1/best.pt"]
    ignored = _git("check-ignore", "--no-index", *outputs).split()
    assert ignored == outputs
    shipped = [f"weights/{m}.int8.onnx" for m in ("face", "face192", "eyes")]
    proc = subprocess.run(["git", "-C", REPO_ROOT, "check-ignore", "--no-index", *shipped], capture_output=True,
                          text=True)
    assert proc.stdout.split() == [], "a shipped int8 file is ignored"
