# Sourced by compare_release.sh and card_figures.sh, which take a folder of models and a model name:
#   model_files "$@"        sets DIR and NAME (face, face192 or eyes; default face) from the arguments, and XML and
#                           YT_TEST (the 300-W labels, the YouTube-Faces test frames) from the environment or
#                           their place in ../shared/data; a bad name ends the script with a one-line error
#   require_files FILE...   ends the script with a one-line error naming the first missing file
model_files() {
    DIR=${1:?usage: bash $0 MODELS_DIR [face|face192|eyes]}
    NAME=${2:-face}
    case $NAME in face|face192|eyes) ;; *) echo "error: NAME must be face, face192 or eyes, got '$NAME'" >&2; exit 2;; esac
    XML=${XML:-../shared/data/300w-subset/labels_300w_subset_train.xml}
    YT_TEST=${YT_TEST:-../shared/data/youtube-faces-keypoints/test_frames_keypoints.csv}
}

require_files() {
    local f
    for f in "$@"; do [[ -f $f ]] || { echo "error: $f not found" >&2; exit 2; }; done
}
