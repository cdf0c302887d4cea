#!/usr/bin/env bash
# Short ablation runs behind the table in weights/README.md (CPU, ~20 minutes on 2 cores).
# Each run trains the face model for a few epochs with one lever changed and
# reports the best validation NME on the held-out 300-W photos (log.csv of the run).
#   bash training/ablations.sh [EPOCHS]
#   ONLY=160 bash training/ablations.sh      # only the runs whose name contains "160"
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-4}
DATA=(../shared/data/300w-subset/labels_300w_subset_train.xml
      ../shared/data/youtube-faces-keypoints/training_frames_keypoints.csv)
COMMON=(--data "${DATA[@]}" --val-from labels_300w_subset_train.xml --val-fraction 0.2
        --epochs "$EPOCHS" --runs-dir runs/ablations)
run() {  # name, extra args...
    local name=$1; shift
    if [[ -n "${ONLY:-}" && "$name" != *"$ONLY"* ]]; then return 0; fi
    python training/face/cpu/train.py "${COMMON[@]}" "$@" > "runs/ablations/$name.log" 2>&1
    local dir; dir=$(grep -o 'run folder: .*' "runs/ablations/$name.log" | head -1 | cut -d' ' -f3)
    python - "$name" "$dir/log.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[2])))
best = min(rows, key=lambda r: float(r["val_nme"]))
ips = sum(float(r["img_per_s"]) for r in rows) / len(rows)
print(f"{sys.argv[1]:<28} best val NME {float(best['val_nme']):.2f}% (epoch {best['epoch']}/{len(rows)})  {ips:.1f} img/s")
PY
}
mkdir -p runs/ablations
run "regression-mse (seed head)" --head regression --loss mse
run "pip-l1 (shipped head)" --head pip
run "pip-l1 160px input" --head pip --input-size 160
run "pip-wing loss" --head pip --loss wing
# Decoding photos every epoch vs the in-memory cache of face regions (speed only).
run "cache (default), 1 epoch" --epochs 1 --max-faces 640
run "no cache, 1 epoch" --epochs 1 --max-faces 640 --no-cache
