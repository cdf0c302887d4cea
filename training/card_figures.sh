#!/usr/bin/env bash
# The model card's evaluation figures for one model (weights/README.md, "Evaluation"): every evaluate.py cell of its
# rows, one line each (the cell's tag, then evaluate.py's machine-readable line), so that a replaced model gets its card
# rows from one command:
#   bash training/card_figures.sh weights face                     # face.pt and face.int8.onnx (or face192, eyes)
#   bash training/card_figures.sh runs/recipe-e192/release face192  # a candidate, before it replaces weights/
# Tags: DATA-FILE-SETTING, DATA heldout (300-W held-out photos) or youtube (YouTube-Faces test frames), FILE pt or int8,
# SETTING landmarks (landmark boxes), detector (MTCNN + refine), blazeface (the default detector + refine), flip-,
# multicrop-, norefine-, eyes- (points 36-47 of a face model), or a --degrade name (landmark boxes). Each cell's output
# and CED plot go to OUT (default runs/card-figures/NAME-HASH, HASH from NAME.pt's contents, so that a replaced model
# never reuses another's cells and nothing is written into weights/), figures.txt collects the lines; run it again
# after an interruption and finished cells are kept. FINAL=1: NAME is a final fit (recipe.sh FINAL=1, trained on the
# held-out photos): its YouTube-Faces test cells alone; its held-out rows are its twin's (bash training/twin.sh NAME).
# XML=..., YT_TEST=... override the data paths.
set -euo pipefail
cd "$(dirname "$0")/.."
source training/model_files.sh
model_files "$@"
require_files "$DIR/$NAME.pt" "$DIR/$NAME.int8.onnx" "$XML" "$YT_TEST"
FINAL=${FINAL:-0}
[[ $FINAL == 0 || $FINAL == 1 ]] || { echo "error: FINAL must be 0 or 1, got '$FINAL'" >&2; exit 2; }
OUT=${OUT:-runs/card-figures/$NAME-$(sha256sum "$DIR/$NAME.pt" | cut -c1-12)}
mkdir -p "$OUT"
trap 'rm -f "$OUT"/*.$$.part' EXIT  # this run's unfinished files (per run: two runs at once write apart)

FACE_BOXES=weights  # the eye model's detector pass: face.int8.onnx with the held-out split (its twin)
[[ $NAME != eyes ]] || FACE_BOXES=$(twin_dir face)
H="--data $XML --split heldout"
Y="--data $YT_TEST"
LM="--boxes landmarks"
DET="--boxes detector --refine --detector mtcnn"
CELLS=()  # tag|file|evaluate.py arguments
for f in pt int8; do
    det=$DET
    [[ $NAME == eyes ]] && det="$DET --face-weights $FACE_BOXES/face.int8.onnx"
    CELLS+=("heldout-$f-landmarks|$f|$H $LM" "heldout-$f-detector|$f|$H $det"
            "heldout-$f-flip-landmarks|$f|$H $LM --flip-test" "heldout-$f-flip-detector|$f|$H $det --flip-test")
done
if [[ $NAME == eyes ]]; then
    CELLS+=("heldout-int8-multicrop-detector|int8|$H $DET --face-weights $FACE_BOXES/face.int8.onnx --multi-crop"
            "youtube-pt-landmarks|pt|$Y $LM" "youtube-pt-flip-landmarks|pt|$Y $LM --flip-test")
else
    CELLS+=("heldout-pt-blazeface|pt|$H --boxes detector --refine" "heldout-int8-blazeface|int8|$H --boxes detector --refine"
            "heldout-pt-eyes-landmarks|pt|$H $LM --points eyes" "heldout-pt-eyes-detector|pt|$H $DET --points eyes"
            "heldout-pt-norefine|pt|$H --boxes detector --detector mtcnn"
            "heldout-int8-multicrop|int8|$H $DET --multi-crop" "heldout-int8-multicrop-flip|int8|$H $DET --multi-crop --flip-test"
            "youtube-pt-landmarks|pt|$Y $LM" "youtube-pt-detector|pt|$Y $DET" "youtube-int8-detector|int8|$Y $DET"
            "youtube-int8-blazeface|int8|$Y --boxes detector --refine" "youtube-pt-flip-landmarks|pt|$Y $LM --flip-test"
            "youtube-int8-multicrop|int8|$Y $DET --multi-crop")
    for d in low-contrast dark blur jpeg tight; do
        CELLS+=("heldout-pt-$d|pt|$H $LM --degrade $d" "heldout-int8-$d|int8|$H $LM --degrade $d" "youtube-pt-$d|pt|$Y $LM --degrade $d")
    done
fi
if (( FINAL )); then  # a final fit trained on the held-out photos: their cells would flatter it
    KEEP=()
    for c in "${CELLS[@]}"; do [[ $c == youtube-* ]] && KEEP+=("$c"); done
    CELLS=("${KEEP[@]}")
fi

: > "$OUT/figures.txt.$$.part"
i=0
for c in "${CELLS[@]}"; do
    IFS='|' read -r tag kind args <<< "$c"
    read -r -a ARGS <<< "$args"
    file=$DIR/$NAME.pt; [[ $kind == int8 ]] && file=$DIR/$NAME.int8.onnx
    i=$((i + 1))
    if [[ ! -f $OUT/$tag.txt ]]; then
        echo "== $i/${#CELLS[@]} $tag: $file" >&2
        python inference/evaluate.py --weights "$file" "${ARGS[@]}" --ced "$OUT/$tag.png" --force > "$OUT/$tag.txt.$$.part"
        mv "$OUT/$tag.txt.$$.part" "$OUT/$tag.txt"
    fi
    echo "$tag $(grep '^NME=' "$OUT/$tag.txt" | tail -n 1)" >> "$OUT/figures.txt.$$.part"
done
mv "$OUT/figures.txt.$$.part" "$OUT/figures.txt"
cat "$OUT/figures.txt"
