#!/usr/bin/env bash
# Issue #18, first lever: a 128 px student trained on the 300-W faces plus YouTube-Faces TRAINING frames
# labelled in the 300-W style by a teacher (training/tools/pseudo_label.py). The test frames are never labelled.
#   bash training/pseudo_student.sh [EPOCHS]    # default 4 (each epoch is 2,170 faces: 970 300-W + 1,200 frames)
# TEACHER=... (default face192.pt with the held-out split, from training/model_files.sh's twin_dir; several,
# space-separated, are averaged), INIT=... (default face.pt's twin), FRAMES=... (frames to label, evenly spread;
# 0: all 3,462), OUT=... (default runs/pseudo-student), MAX_DISAGREEMENT=PCT (drop frames whose teacher disagrees with its mirrored self by more: pseudo_label.py),
# LR=... (default 1e-3), TRAIN_ARGS=... (more train.py options, e.g. --amp), CONTROL=1 (the same fine-tune on the
# 300-W faces alone, nothing labelled: the run a student is compared with).
# Same held-out split as the shipped models (--val-from the XML, --val-fraction 0.2). Run it again after an
# interruption: the labels are kept and training resumes from its last finished epoch.
# An ablation, not part of the recipe: its measured result is in weights/README.md, "Ablations".
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-4}
XML=${XML:-../shared/data/300w-subset/labels_300w_subset_train.xml}
YT=${YT:-../shared/data/youtube-faces-keypoints/training_frames_keypoints.csv}
source training/model_files.sh
[[ -n ${TEACHER:-} ]] || { TWIN=$(twin_dir face192); TEACHER=$TWIN/face192.pt; }
read -r -a TEACHER <<< "$TEACHER"
[[ -n ${INIT:-} ]] || { INIT=$(twin_dir face)/face.pt; }
FRAMES=${FRAMES:-1200}
OUT=${OUT:-runs/pseudo-student}
OFF_XML=${OFF_XML:-0.99}
LR=${LR:-1e-3}
read -r -a TRAIN_ARGS <<< "${TRAIN_ARGS:-}"
LABELS=$OUT/ytf_train_300w.csv
mkdir -p "$OUT"
if [[ -n ${CONTROL:-} ]]; then
    DATA=("$XML") OFFSETS=("$OFF_XML")
else
    if [[ ! -f $LABELS ]]; then
        python training/tools/pseudo_label.py --data "$YT" --weights "${TEACHER[@]}" --flip-test --max-frames "$FRAMES" \
            ${MAX_DISAGREEMENT:+--max-disagreement "$MAX_DISAGREEMENT"} --out "$LABELS"
    fi
    # the labels keep the teacher's own offset from mirror symmetry: mirror them with it (photo pixels)
    OFF_PSEUDO=$(grep -o '"mirror_offset_photo_px": *[-0-9.e]*' "$LABELS.json" 2>/dev/null | grep -o '[-0-9.e]*$' || true)
    [[ -n $OFF_PSEUDO ]] || { echo "error: $LABELS.json has no mirror_offset_photo_px" >&2; exit 2; }
    DATA=("$XML" "$LABELS") OFFSETS=("$OFF_XML" "$OFF_PSEUDO")
fi
DIR=$OUT/face/1
if [[ -f $DIR/last.pt ]]; then
    python training/face/cpu/train.py --resume "$DIR" --epochs "$EPOCHS"
else
    python training/face/cpu/train.py --data "${DATA[@]}" --val-from "$(basename "$XML")" --val-fraction 0.2 \
        --init "$INIT" --head pip --input-size 128 --warmup-epochs 0 --lr "$LR" --ema 0.99 \
        --mirror-offset "${OFFSETS[@]}" --epochs "$EPOCHS" --runs-dir "$OUT" ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"}
fi
mkdir -p "$OUT/release"
python training/tools/release_weights.py "$DIR/last.pt" "$OUT/release/student.plain.pt" --force
python training/tools/mirror_offset.py --weights "$OUT/release/student.plain.pt" --data "$XML" --split train \
    --write "$OUT/release/student.pt" --force
rm -f "$OUT/release/student.plain.pt"
python inference/export_onnx.py --weights "$OUT/release/student.pt" --int8 --force --calib-data "$XML" "$YT"
echo "student: $OUT/release/student.pt and student.int8.onnx (score: python inference/evaluate.py --weights" \
     "$OUT/release/student.int8.onnx --data $XML --split heldout --boxes detector --refine)"
