# Sourced by compare_release.sh and card_figures.sh, which take a folder of models and a model name:
#   model_files "$@"        sets DIR and NAME (face, face192 or eyes; default face) from the arguments, and XML and
#                           YT_TEST (the 300-W labels, the YouTube-Faces test frames) from the environment or
#                           their place in ../shared/data; a bad name ends the script with a one-line error
#   check_model_name NAME   ends the script with a one-line error unless NAME is face, face192 or eyes
#   require_files FILE...   ends the script with a one-line error naming the first missing file
#   twin_dir NAME           prints a folder holding NAME.pt and NAME.int8.onnx trained with the held-out split: weights/,
#                           or, where weights/NAME.pt is a final fit (recipe.sh FINAL=1: it trained on the held-out
#                           photos), runs/twins/, written on first use from the commit that shipped its twin (TWINS)
model_files() {
    DIR=${1:?usage: bash $0 MODELS_DIR [face|face192|eyes]}
    NAME=${2:-face}
    check_model_name "$NAME"
    XML=${XML:-../shared/data/300w-subset/labels_300w_subset_train.xml}
    YT_TEST=${YT_TEST:-../shared/data/youtube-faces-keypoints/test_frames_keypoints.csv}
}

check_model_name() {  # ends the script with a one-line error unless $1 is a shipped model's name
    case $1 in face|face192|eyes) ;; *) echo "error: NAME must be face, face192 or eyes, got '$1'" >&2; exit 2;; esac
}

require_files() {
    local f
    for f in "$@"; do [[ -f $f ]] || { echo "error: $f not found" >&2; exit 2; }; done
}

# The final fits in weights/ and the commits that shipped their twins (same recipe, held-out split).
declare -A TWINS=([face]=9bf6535 [face192]=b35a4e5)

twin_dir() {
    local name=$1 commit=${TWINS[$1]:-} f
    [[ -n $commit ]] || { echo weights; return 0; }
    mkdir -p runs/twins
    for f in "$name.pt" "$name.int8.onnx"; do
        [[ -f runs/twins/$f ]] && continue
        git show "$commit:weights/$f" > "runs/twins/$f.$$.part" 2>/dev/null ||
            { rm -f "runs/twins/$f.$$.part"; echo "error: weights/$name.pt is a final fit; its twin (weights/$f in" \
              "commit $commit) needs the git history (git fetch --unshallow)" >&2; exit 2; }
        mv "runs/twins/$f.$$.part" "runs/twins/$f"
    done
    echo runs/twins
}
