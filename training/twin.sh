#!/usr/bin/env bash
# The held-out-split twin of a shipped final fit (weights/README.md, "Data and split"): prints the folder that holds
# NAME.pt and NAME.int8.onnx trained with the held-out split, for runs and scores that hold those faces out:
#   bash training/twin.sh face      # runs/twins (written from the git history on first use), or weights
#   python training/eyes/cpu/train.py ... --init "$(bash training/twin.sh face)/face.pt"
set -euo pipefail
cd "$(dirname "$0")/.."
source training/model_files.sh
twin_dir "${1:?usage: bash training/twin.sh face|face192|eyes}"
