#!/usr/bin/env bash
# Ablation runs behind the table in weights/README.md; each changes one lever and
# reports the best and the last validation NME on the held-out 300-W photos (from the run's log.csv).
#   bash training/ablations.sh [EPOCHS]      # short runs from scratch on both data sets
#   bash training/ablations.sh last [INIT]   # the last stage: 24 epochs on the 300-W faces alone from the
#                                            # stage-1 face model (INIT, default runs/recipe/mixed/face/1/last.pt),
#                                            # in bfloat16 (--amp) where the CPU has it natively: about 10 minutes
#                                            # per run (float32 elsewhere: about 17 minutes)
#   bash training/ablations.sh finetune      # fine-tunes of face.pt (its twin) on the 300-W faces alone, with and
#                                            # without distillation from face192.pt (its held-out-split twin
#                                            # where weights/ holds a final fit: model_files.sh), damage, tight
#                                            # framing or channels-last: 8-20 epochs, 6-45 minutes a run
#   bash training/ablations.sh cheaper       # stage 1 of the recipe (24 epochs) as it is, with its first epochs
#                                            # at 64 and 96 px (--progressive-resize), and with half the
#                                            # YouTube-Faces frames an epoch (--data-fraction): 13-25 minutes a
#                                            # run in bfloat16 on a 2-core Xeon with AMX
#   bash training/ablations.sh datasize INIT # the recipe's last stage at 192 px (2a) from a stage-1 model (INIT) on
#                                            # all 970 training faces and on 776 of them (4/5: the share a final fit,
#                                            # recipe.sh FINAL=1, adds to 970): what more 300-W faces give
#   ONLY=160 bash training/ablations.sh      # only the runs whose name contains "160"
# Runs and logs go to runs/ablations/<mode> (OUT=DIR instead of runs/ablations).
set -euo pipefail
cd "$(dirname "$0")/.."
XML=../shared/data/300w-subset/labels_300w_subset_train.xml
DATA=("$XML" ../shared/data/youtube-faces-keypoints/training_frames_keypoints.csv)
SPLIT=(--val-from labels_300w_subset_train.xml --val-fraction 0.2)
TOP=${OUT:-runs/ablations}
# bfloat16 where the CPU has it natively (float32 elsewhere): for the longer modes
AMP=$(python -c 'from common.device import native_bf16; print("--amp" if native_bf16() else "--no-amp")')
if [[ ${1:-} == last ]]; then
    INIT=${2:-runs/recipe/mixed/face/1/last.pt}
    [[ -f $INIT ]] || { echo "error: $INIT not found (train stage 1 of training/recipe.sh first)" >&2; exit 2; }
    OUT=$TOP/last
    COMMON=(--data "$XML" "${SPLIT[@]}" --init "$INIT" --warmup-epochs 0 --lr 3e-4 --epochs 24 "$AMP"
            --runs-dir "$OUT")
elif [[ ${1:-} == datasize ]]; then
    INIT=${2:?usage: bash training/ablations.sh datasize STAGE1_LAST_PT}
    [[ -f $INIT ]] || { echo "error: $INIT not found (train stage 1 of training/recipe.sh first)" >&2; exit 2; }
    OUT=$TOP/datasize
    COMMON=(--data "$XML" "${SPLIT[@]}" --init "$INIT" --input-size 192 --warmup-epochs 0 --lr 1e-3
            --mirror-offset 0.99 --ema 0.99 --epochs 24 "$AMP" --channels-last --runs-dir "$OUT")
elif [[ ${1:-} == cheaper ]]; then
    OUT=$TOP/cheaper
    COMMON=(--data "${DATA[@]}" "${SPLIT[@]}" --head pip --input-size 128 --mirror-offset 0.99 0.73 --epochs 24
            "$AMP" --channels-last --runs-dir "$OUT")
elif [[ ${1:-} == finetune ]]; then
    OUT=$TOP/finetune
    source training/model_files.sh
    TWIN_FACE=$(twin_dir face)  # weights/face.pt is a final fit: its twin holds the same faces out
    COMMON=(--data "$XML" "${SPLIT[@]}" --init "$TWIN_FACE/face.pt" --warmup-epochs 0 --ema 0.99 --runs-dir "$OUT")
else
    OUT=$TOP
    COMMON=(--data "${DATA[@]}" "${SPLIT[@]}" --epochs "${1:-4}" --runs-dir "$OUT")
fi
run() {  # name, extra args...
    local name=$1; shift
    if [[ -n "${ONLY:-}" && "$name" != *"$ONLY"* ]]; then return 0; fi
    python training/face/cpu/train.py "${COMMON[@]}" "$@" > "$OUT/$name.log" 2>&1
    local dir; dir=$(grep -o 'run folder: .*' "$OUT/$name.log" | head -1 | cut -d' ' -f3)
    python - "$name" "$dir/log.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[2])))
best = min(rows, key=lambda r: float(r["val_nme"]))
ips = sum(float(r["img_per_s"]) for r in rows) / len(rows)
minutes = sum(float(r["epoch_s"]) for r in rows) / 60
print(f"{sys.argv[1]:<28} best val NME {float(best['val_nme']):.2f}% (epoch {best['epoch']}/{len(rows)}), "
      f"last {float(rows[-1]['val_nme']):.2f}%  {ips:.1f} img/s, {minutes:.1f} min")
PY
}
mkdir -p "$OUT"
if [[ ${1:-} == last ]]; then
    run "baseline (previous stage 3)"
    run "ema 0.99" --ema 0.99
    run "weaker augmentation" --rotation 10 --box-scale 0.05 --box-shift 0.03
    run "offset radius 1" --offset-radius 1
    run "wing loss, ema" --loss wing --ema 0.99
    run "48 epochs, ema" --epochs 48 --ema 0.99
    run "lr 1e-3, ema" --lr 1e-3 --ema 0.99
    run "seed 1, ema" --seed 1 --ema 0.99
    run "no mirroring, ema" --no-mirror --ema 0.99
    run "no mirroring, lr 1e-3, ema" --no-mirror --lr 1e-3 --ema 0.99
    # Mirroring that keeps 300-W's horizontal annotation offset (training/tools/mirror_offset.py, model card)
    run "mirror offset 0.99, lr 1e-3, ema" --mirror-offset 0.99 --lr 1e-3 --ema 0.99
    exit 0
fi
if [[ ${1:-} == datasize ]]; then
    run "all 970 faces"
    run "776 of 970 faces" --max-faces 776
    # then, per run: evaluate.py --weights <run>/last.pt --data $XML --split heldout --boxes landmarks
    # --per-face <run>.csv, and training/tools/compare_evals.py on the two CSVs (docs/ablations.md)
    exit 0
fi
if [[ ${1:-} == cheaper ]]; then
    names=("stage 1, 24 epochs at 128 px" "stage 1, 6 epochs at 64 px, 6 at 96, 12 at 128"
           "stage 1, half the frames an epoch")
    run "${names[0]}"
    run "${names[1]}" --progressive-resize 64:6 96:6
    run "${names[2]}" --data-fraction 1 0.5
    # what each leaves in a finished model: the last stage (the recipe's 2a at 128 px) from each
    for name in "${names[@]}"; do
        [[ -f $OUT/$name.log ]] || continue
        init=$(grep -o 'run folder: .*' "$OUT/$name.log" | head -1 | cut -d' ' -f3)/last.pt
        COMMON=(--data "$XML" "${SPLIT[@]}" --init "$init" --input-size 128 --warmup-epochs 0 --lr 1e-3
                --mirror-offset 0.99 --ema 0.99 --epochs 24 "$AMP" --channels-last --runs-dir "$OUT/last")
        run "last stage from $name"
    done
    # then, per run: evaluate.py --weights <run>/last.pt --data $XML --split heldout --per-face <run>.csv (and
    # on the YouTube-Faces test frames), and training/tools/compare_evals.py on two CSVs (docs/ablations.md)
    exit 0
fi
if [[ ${1:-} == finetune ]]; then
    TWIN=$(twin_dir face192)
    T=(--teacher "$TWIN/face192.pt" --teacher-weight 0.5)
    run "8 epochs, lr 3e-4" --epochs 8 --lr 3e-4 --mirror-offset 0.99
    run "8 epochs, lr 3e-4, teacher" --epochs 8 --lr 3e-4 --mirror-offset 0.99 "${T[@]}"
    run "12 epochs, lr 1e-3" --epochs 12 --lr 1e-3 --mirror-offset 0.99
    run "12 epochs, lr 1e-3, teacher" --epochs 12 --lr 1e-3 --mirror-offset 0.99 "${T[@]}"
    # the pair a last stage averages (2a, 2b), with the teacher; then, to score their average:
    #   python training/tools/release_weights.py $OUT/face/<a>/last.pt $OUT/face/<b>/last.pt $OUT/distil.pt
    #   python inference/evaluate.py --weights $OUT/distil.pt --data $XML --split heldout
    #   python inference/export_onnx.py --weights $OUT/distil.pt --int8 --calib-data "${DATA[@]}"   # its int8 twin,
    #   then evaluate.py on $OUT/distil.int8.onnx with --boxes detector --refine (as predict.py runs)
    run "20 epochs, lr 1e-3, teacher" --epochs 20 --lr 1e-3 --mirror-offset 0.99 "${T[@]}"
    run "20 epochs, lr 1e-3, teacher, no mirroring" --epochs 20 --lr 1e-3 --no-mirror "${T[@]}"
    # damage augmentation (train.py --blur/--jpeg/--occlusion), against the 12-epoch run without it;
    # then evaluate.py --degrade low-contrast|dark|blur|jpeg on both runs' last.pt
    run "12 epochs, lr 1e-3, damage 0.3" --epochs 12 --lr 1e-3 --mirror-offset 0.99 --blur 0.3 --jpeg 0.3 --occlusion 0.3
    # tight framing (train.py --tight), the same way; then evaluate.py --degrade tight
    run "12 epochs, lr 1e-3, tight 0.3" --epochs 12 --lr 1e-3 --mirror-offset 0.99 --tight 0.3
    # both at once, longer: a warm restart of face.pt's last stage (score its last.pt as above)
    run "16 epochs, lr 1e-3, teacher, tight 0.3" --epochs 16 --lr 1e-3 --mirror-offset 0.99 --tight 0.3 "${T[@]}"
    # style heads (train.py --style-heads): the YouTube-Faces frames back in, with their own head, against the
    # same fine-tune on the 300-W faces alone
    run "8 epochs, lr 1e-3" --epochs 8 --lr 1e-3 --mirror-offset 0.99
    run "8 epochs, lr 1e-3, both sets, style heads" --epochs 8 --lr 1e-3 --data "${DATA[@]}" --style-heads \
        --mirror-offset 0.99 0.73
    # channels-last memory layout (train.py --channels-last): its speed, and the same accuracy?
    run "12 epochs, lr 1e-3, channels-last" --epochs 12 --lr 1e-3 --mirror-offset 0.99 --channels-last
    run "12 epochs, lr 1e-3, seed 1" --epochs 12 --lr 1e-3 --mirror-offset 0.99 --seed 1   # seed noise, to judge it
    # warm restarts with the teacher, bfloat16 where native: from face192.pt's twin instead of face.pt's (the same
    # network, its last stages at 192 px), and with the teacher's share of each target 0.8 instead of 0.5
    run "12 epochs, lr 1e-3, teacher, bf16" --epochs 12 --lr 1e-3 --mirror-offset 0.99 "$AMP" "${T[@]}"
    run "12 epochs, lr 1e-3, teacher, bf16, from face192" --epochs 12 --lr 1e-3 --mirror-offset 0.99 "$AMP" "${T[@]}" \
        --init "$TWIN/face192.pt"
    run "12 epochs, lr 1e-3, teacher 0.8, bf16" --epochs 12 --lr 1e-3 --mirror-offset 0.99 "$AMP" "${T[@]}" \
        --teacher-weight 0.8
    exit 0
fi
run "regression-mse (seed head)" --head regression --loss mse
run "pip-l1 (shipped head)" --head pip
run "pip-l1 160px input" --head pip --input-size 160
# Mirroring (model card, "Ablations"): keeping each set's offset, or none
run "pip-l1 mirror offset 0.99 0.73" --head pip --mirror-offset 0.99 0.73
run "pip-l1 no mirroring" --head pip --no-mirror
run "pip-wing loss" --head pip --loss wing
# Decoding photos every epoch vs the in-memory cache of face regions, and the channels-last layout (speed only).
run "cache (default), 1 epoch" --epochs 1 --max-faces 640
run "no cache, 1 epoch" --epochs 1 --max-faces 640 --no-cache
run "channels-last, 1 epoch" --epochs 1 --max-faces 640 --channels-last
