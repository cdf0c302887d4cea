#!/usr/bin/env bash
# Should a newly trained model replace a shipped one? Scores the candidate and weights/ on the same faces and
# prints the paired change (training/tools/compare_evals.py: mean, 95% bootstrap interval) for the measures the model
# card's ablation rows quote; the card's rule: replace only for a gain of at least 0.05 NME points.
#   bash training/compare_release.sh runs/recipe-e192/release            # face.pt and face.int8.onnx
#   bash training/compare_release.sh runs/recipe-e192/release face192    # or eyes
# Measures (held-out 300-W photos unless named): int8 with MTCNN boxes and refine (the model card's detector
# columns; predict.py's default BlazeFace scores within 0.01 of it), float32 with landmark boxes, float32 on
# tight-cut photos (face models), and int8 on the YouTube-Faces test frames (eyes: points 36-47, the detector pass
# by face.int8.onnx's held-out-split twin). FINAL=1: the candidate is a final fit (recipe.sh FINAL=1; it trained on the held-out
# photos): the YouTube-Faces test frames alone, against weights/. Without FINAL=1 the shipped side is
# the held-out-split twin where weights/ holds a final fit (model_files.sh, twin_dir). Per-face files, each
# evaluation's output and compare.txt go to OUT (default CANDIDATE/compare-NAME); run it again after an
# interruption and finished evaluations are kept: each is named by the evaluated file's hash, so a retrained
# candidate or a replaced shipped file is scored anew. XML=..., YT_TEST=... override the data paths.
set -euo pipefail
cd "$(dirname "$0")/.."
source training/model_files.sh
model_files "$@"
require_files "$DIR/$NAME.pt" "$DIR/$NAME.int8.onnx" "weights/$NAME.pt" "weights/$NAME.int8.onnx" "$XML"
FINAL=${FINAL:-0}
[[ $FINAL == 0 || $FINAL == 1 ]] || { echo "error: FINAL must be 0 or 1, got '$FINAL'" >&2; exit 2; }
(( ! FINAL )) || require_files "$YT_TEST"
SHIPPED=weights
(( FINAL )) || SHIPPED=$(twin_dir "$NAME")  # a final fit in weights/ trained on the held-out photos
OUT=${OUT:-$DIR/compare-$NAME}
mkdir -p "$OUT"
trap 'rm -f "$OUT"/compare.txt.$$.part' EXIT  # this run's unfinished report (two runs at once write apart)
HELD=(--data "$XML" --split heldout)
FACE_BOXES=weights  # the eye model's detector pass: face.int8.onnx with the held-out split (its twin)
[[ $NAME != eyes ]] || FACE_BOXES=$(twin_dir face)
MTCNN="--boxes detector --refine --detector mtcnn"
[[ $NAME != eyes ]] || MTCNN+=" --face-weights $FACE_BOXES/face.int8.onnx"
MEASURES=("int8-mtcnn|int8|${HELD[*]} $MTCNN" "pt-landmarks|pt|${HELD[*]} --boxes landmarks")
[[ $NAME == eyes ]] || MEASURES+=("pt-tight|pt|${HELD[*]} --boxes landmarks --degrade tight")
(( FINAL )) && MEASURES=()  # a final fit trained on the held-out photos
if [[ -f $YT_TEST ]]; then
    MEASURES+=("int8-youtube-test-mtcnn|int8|--data $YT_TEST $MTCNN")
else
    echo "note: $YT_TEST not found: the YouTube-Faces test measure is left out" >&2
fi
: > "$OUT/compare.txt.$$.part"
for m in "${MEASURES[@]}"; do
    IFS='|' read -r tag kind args <<< "$m"
    read -r -a ARGS <<< "$args"
    file=$NAME.pt; [[ $kind == int8 ]] && file=$NAME.int8.onnx
    CSVS=()
    for who in shipped candidate; do
        dir=$SHIPPED; [[ $who == candidate ]] && dir=$DIR
        stem=$OUT/$who-$tag-$(sha256sum "$dir/$file" | cut -c1-12)
        if [[ ! -f $stem.csv ]]; then
            echo "== $who $tag: $dir/$file" >&2
            python inference/evaluate.py --weights "$dir/$file" "${ARGS[@]}" --per-face "$stem.csv" \
                --ced "$stem.png" --force > "$stem.txt"
        fi
        CSVS+=("$stem.csv")
    done
    { echo "== $tag ($file; evaluate.py ${ARGS[*]})"
      python training/tools/compare_evals.py "${CSVS[@]}"; } >> "$OUT/compare.txt.$$.part"
done
mv "$OUT/compare.txt.$$.part" "$OUT/compare.txt"
cat "$OUT/compare.txt"
