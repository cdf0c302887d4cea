#!/usr/bin/env bash
# The shipped recipe end to end (weights/README.md, "Training recipe", explains each stage):
#   bash training/recipe.sh [cpu|cuda|rocm]     # default cpu; its time: weights/README.md, "Training recipe"
#   TRAIN_ARGS=--amp bash training/recipe.sh    # bfloat16 mixed precision: faster on CPUs with avx512_bf16
# The shipped face models (face.pt's teacher is the previous face192.pt, from a 48-epoch stage 1):
#   STAGE1_EPOCHS=96 TRAIN_ARGS=--amp LAST_SIZE=192 EYES=0 FINAL=1 bash training/recipe.sh            # face192.pt
#   (a final fit, below; its twin, the held-out figures' model: the same without FINAL=1)
#   TRAIN_ARGS=--amp LAST_SIZE=192 bash training/recipe.sh                                              # face.pt's teacher
#   STAGE1_EPOCHS=96 TRAIN_ARGS=--amp TEACHER=runs/recipe/release/face192.pt bash training/recipe.sh   # face.pt
# eyes.pt: then the eye stages again, from the finished face.pt (float32; face stages are skipped as done):
#   rm -rf runs/recipe-e96/*/eyes; STAGE1_EPOCHS=96 TEACHER=runs/recipe/release/face192.pt \
#       EYES_INIT=runs/twins/face.pt bash training/recipe.sh   # weights/face.pt's twin: bash training/twin.sh face
# Stages write to runs/recipe/<stage>/<task>/1 (RUNS=DIR to change runs/recipe). Run it
# again after an interruption: finished stages are skipped and an unfinished one resumes
# from its last finished epoch (a kill loses at most the epoch under way). A recipe longer than
# one session or machine lease: keep its runs outside a checkout that may be laid anew, and run
# the same command again in the next session, e.g.
#   RUNS=$HOME/runs/recipe nohup bash training/recipe.sh cpu > $HOME/runs/recipe.log 2>&1 &
# Each run folder's time.txt sums its training time over the sessions that ran it. The released files go to runs/recipe/release/ (face.pt,
# eyes.pt and their .int8.onnx twins); copy them to weights/ yourself.
# FINAL=1: the final fit for a release, the same recipe on every face (no held-out split, no validation;
# runs/recipe-final, or runs/recipe-e96-final with STAGE1_EPOCHS=96). The same command without FINAL=1 is its
# twin: the model card's held-out figures are the twin's, and compare_release.sh scores the two on the
# YouTube-Faces test frames (the twin in weights/), e.g.
#   STAGE1_EPOCHS=96 TRAIN_ARGS=--amp LAST_SIZE=192 bash training/recipe.sh            # the twin
#   STAGE1_EPOCHS=96 TRAIN_ARGS=--amp LAST_SIZE=192 FINAL=1 bash training/recipe.sh    # the release
#   FINAL=1 bash training/compare_release.sh runs/recipe-e96-final/release face192     # the check
# LAST_SIZE=192 trains the face model's last stage at 192 px: weights/face192.pt, the most accurate
# model (the default on a GPU), for more network time and longer stages 2a/2b. Any multiple of
# 16 works. LAST_RUNS=1 trains and releases only the first of the two last-stage face runs (the
# mirrored one). TEACHER=weights/face192.pt distils that model into the last-stage face runs
# (train.py --teacher, half of each target; its own run folders). STAGE1_EPOCHS=96 (or 24) trains stage 1
# for 96 (24) epochs instead of 48, in its own folder tree (runs/recipe-e96 unless RUNS= is set).
# EYES=0 trains and releases the face model alone (stages 1-2b): the eye stages do not depend on
# LAST_SIZE or TEACHER, so a second face model from the same stage 1 need not train them again.
# FACE=0 trains and releases the eye model alone (stages 3-4) from a finished face model (EYES_INIT, required),
# e.g. eyes.pt's final fit from the final-fit face.pt:
#   FACE=0 EYES_INIT=weights/face.pt FINAL=1 RUNS=$HOME/runs/recipe-eyes-final bash training/recipe.sh
# Accuracy and times of each: weights/README.md.
# Data paths: XML=... and YT=... override the defaults below. TRAIN_ARGS="..." adds
# train.py arguments to every fresh stage, e.g. TRAIN_ARGS=--amp (bfloat16 mixed
# precision: faster on CPUs with avx512_bf16 or AMX; see weights/README.md). A resumed stage takes only
# the machine settings among them (--device, --workers, --threads, --channels-last, --amp); the rest stay the run's own.
set -euo pipefail
cd "$(dirname "$0")/.."
PLATFORM=${1:-cpu}
case $PLATFORM in cpu|cuda|rocm) ;; *) echo "error: platform must be cpu, cuda or rocm, got '$PLATFORM'" >&2; exit 2;; esac
STAGE1_EPOCHS=${STAGE1_EPOCHS:-48}
[[ $STAGE1_EPOCHS =~ ^[1-9][0-9]*$ ]] ||
    { echo "error: STAGE1_EPOCHS must be a whole number of epochs, got '$STAGE1_EPOCHS'" >&2; exit 2; }
FINAL=${FINAL:-0}
[[ $FINAL == 0 || $FINAL == 1 ]] || { echo "error: FINAL must be 0 or 1, got '$FINAL'" >&2; exit 2; }
TAG=$( (( STAGE1_EPOCHS == 48 )) || echo "-e$STAGE1_EPOCHS")$( (( FINAL == 0 )) || echo "-final")
R=${RUNS:-runs/recipe$TAG}
XML=${XML:-../shared/data/300w-subset/labels_300w_subset_train.xml}
YT=${YT:-../shared/data/youtube-faces-keypoints/training_frames_keypoints.csv}
for f in "$XML" "$YT"; do [[ -f $f ]] || { echo "error: $f not found (set XML= / YT=)" >&2; exit 2; }; done
if (( FINAL )); then SPLIT=(--val-fraction 0); else SPLIT=(--val-from "$(basename "$XML")" --val-fraction 0.2); fi
read -r -a EXTRA <<< "${TRAIN_ARGS:-}"

stage() {  # name task epochs [train.py arguments for a fresh run...]
    local name=$1 task=$2 epochs=$3; shift 3
    local dir=$R/$name/$task/1
    if [[ -f $dir/log.csv ]] && (( $(tail -n 1 "$dir/log.csv" | cut -d, -f1) >= epochs )); then
        echo "== $name/$task: done ($dir)"
        return 0
    fi
    echo "== $name/$task: $epochs epochs -> $dir"
    if [[ -f $dir/last.pt ]]; then
        python "training/$task/$PLATFORM/train.py" --resume "$dir" --epochs "$epochs" "${EXTRA[@]}"
    else
        rm -rf "$dir"  # started but no epoch finished: nothing to keep
        python "training/$task/$PLATFORM/train.py" "$@" "${SPLIT[@]}" "${EXTRA[@]}" --epochs "$epochs" \
            --runs-dir "$R/$name"
    fi
}

# Both data sets place their points about one pixel right of mirror symmetry; mirrored copies keep
# that offset (--mirror-offset, in photo pixels, one per data set, measured with training/tools/mirror_offset.py;
# weights/README.md, "Ablations"; the measurements: docs/history.md). OFF_XML=0 OFF_YT=0 gives a plain mirror.
OFF_XML=${OFF_XML:-0.99}
OFF_YT=${OFF_YT:-0.73}
LAST_SIZE=${LAST_SIZE:-128}
[[ $LAST_SIZE =~ ^[1-9][0-9]*$ ]] && (( LAST_SIZE % 16 == 0 )) ||
    { echo "error: LAST_SIZE must be a multiple of 16 in pixels (128, 160 or 192), got '$LAST_SIZE'" >&2; exit 2; }
LAST_RUNS=${LAST_RUNS:-2}
[[ $LAST_RUNS == 1 || $LAST_RUNS == 2 ]] ||
    { echo "error: LAST_RUNS must be 1 or 2 (last-stage face runs to average), got '$LAST_RUNS'" >&2; exit 2; }
case $LAST_SIZE in
    128) FACE_DIRS=(300w 300w-nomirror); FACE_NAME=face;;
    *) FACE_DIRS=("300w-$LAST_SIZE" "300w-nomirror-$LAST_SIZE"); FACE_NAME=face$LAST_SIZE;;
esac
EYES=${EYES:-1}
[[ $EYES == 0 || $EYES == 1 ]] || { echo "error: EYES must be 0 or 1, got '$EYES'" >&2; exit 2; }
FACE=${FACE:-1}
[[ $FACE == 0 || $FACE == 1 ]] || { echo "error: FACE must be 0 or 1, got '$FACE'" >&2; exit 2; }
(( FACE || EYES )) || { echo "error: FACE=0 and EYES=0 leave nothing to train" >&2; exit 2; }
(( FACE )) || [[ -n ${EYES_INIT:-} ]] ||
    { echo "error: FACE=0 trains the eye stages from a finished face model: set EYES_INIT=" >&2; exit 2; }
LAST_ARGS=()
if [[ -n ${TEACHER:-} ]]; then
    [[ -f $TEACHER ]] || { echo "error: TEACHER=$TEACHER not found" >&2; exit 2; }
    LAST_ARGS=(--teacher "$TEACHER" --teacher-weight 0.5)
    FACE_DIRS=("${FACE_DIRS[0]}-distil" "${FACE_DIRS[1]}-distil")
fi

RELEASE=()
if (( FACE )); then
    # 1. face on both data sets: 48 epochs (STAGE1_EPOCHS), cosine schedule
    stage mixed face "$STAGE1_EPOCHS" --data "$XML" "$YT" --head pip --input-size 128 --mirror-offset "$OFF_XML" "$OFF_YT"
    # 2a, 2b. face on the 300-W faces alone (same held-out photos), saving a moving average of the
    #    weights (model card, "Ablations"): twice from the same stage-1 model, at learning rate 1e-3,
    #    with the offset-keeping mirror and without mirroring; the release averages the two runs'
    #    weights ("Ablations"; LAST_RUNS=1: the mirrored run alone).
    stage "${FACE_DIRS[0]}" face 24 --data "$XML" --init "$R/mixed/face/1/last.pt" --input-size "$LAST_SIZE" \
        --warmup-epochs 0 --lr 1e-3 --mirror-offset "$OFF_XML" --ema 0.99 "${LAST_ARGS[@]}"
    if (( LAST_RUNS == 2 )); then
        stage "${FACE_DIRS[1]}" face 24 --data "$XML" --init "$R/mixed/face/1/last.pt" --input-size "$LAST_SIZE" \
            --warmup-epochs 0 --lr 1e-3 --no-mirror --ema 0.99 "${LAST_ARGS[@]}"
    fi
    RELEASE+=("$FACE_NAME")
fi
# 3. eyes on both data sets, from a face model (EYES_INIT: default the stage-1 one; the shipped eyes.pt
#    started from face.pt's twin, runs/twins/face.pt); 4. eyes on the 300-W faces alone, no mirroring
if (( EYES )); then
    [[ -z ${EYES_INIT:-} || -f $EYES_INIT ]] || { echo "error: EYES_INIT=$EYES_INIT not found" >&2; exit 2; }
    EYES_INIT=${EYES_INIT:-$R/mixed/face/1/last.pt}
    stage mixed eyes 8 --data "$XML" "$YT" --init "$EYES_INIT" --warmup-epochs 0 --lr 5e-4 \
        --mirror-offset "$OFF_XML" "$OFF_YT"
    stage 300w eyes 10 --data "$XML" --init "$R/mixed/eyes/1/last.pt" --warmup-epochs 0 --lr 2e-4 --no-mirror --ema 0.99
    RELEASE+=(eyes)
fi

mkdir -p "$R/release"
if (( FACE )); then
    FACE_RUNS=()
    for d in "${FACE_DIRS[@]:0:$LAST_RUNS}"; do FACE_RUNS+=("$R/$d/face/1/last.pt"); done
    python training/tools/release_weights.py "${FACE_RUNS[@]}" "$R/release/$FACE_NAME.plain.pt" --force  # their weight average (one run: itself)
fi
if (( EYES )); then
    python training/tools/release_weights.py "$R/300w/eyes/1/last.pt" "$R/release/eyes.plain.pt" --force
fi
for name in "${RELEASE[@]}"; do
    # record the model's own annotation offset (measured on training faces) for --flip-test
    python training/tools/mirror_offset.py --weights "$R/release/$name.plain.pt" --data "$XML" --split train \
        --write "$R/release/$name.pt" --force
    rm -f "$R/release/$name.plain.pt"
    python inference/export_onnx.py --weights "$R/release/$name.pt" --int8 --force --calib-data "$XML" "$YT"
done
echo "released: $R/release (scores: python inference/evaluate.py --weights $R/release/${RELEASE[0]}.pt --data $XML --split heldout)"
