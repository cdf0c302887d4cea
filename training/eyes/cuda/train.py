"""Train the 12-point eye model (points 36-47) on an NVIDIA GPU (CUDA).

Install (see README.md in this folder), then from the repository root:
    python training/eyes/cuda/train.py --data ../shared/data/300w-subset/labels_300w_subset_train.xml \\
        ../shared/data/youtube-faces-keypoints/training_frames_keypoints.csv \\
        --init "$(bash training/twin.sh face)/face.pt"
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
from common.cli import run_script  # noqa: E402
from common.training import get_args_parser, main  # noqa: E402

if __name__ == "__main__":
    parser = get_args_parser()
    parser.set_defaults(task="eyes", device="cuda", workers=4, batch_size=64, platform_amp=True)
    run_script(main, parser)
