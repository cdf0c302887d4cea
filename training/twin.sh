#!/usr/bin/env bash
# The held-out-split twin of a shipped final fit (weights/README.md, "Data and split"): prints the folder that holds
# NAME.pt and NAME.int8.onnx trained with the held-out split, for runs and scores that hold those faces out:
#   bash training/twin.sh face      # <repository>/runs/twins (written from the git history on first use), or
#                                   # <repository>/weights: an absolute path, so it serves from any folder
#   python training/eyes/cpu/train.py ... --init "$(bash training/twin.sh face)/face.pt"
set -euo pipefail
cd "$(dirname "$0")/.."
source training/model_files.sh
check_model_name "${1:-}"
dir=$(twin_dir "$1")  # its one-line error ends the script (set -e)
echo "$PWD/$dir"
