"""Find every face in photos, videos or a camera stream, put 68 landmarks on
each and draw them.

Install (CPU):  pip install -r requirements-cpu.txt
Run from anywhere (the weights default to this repository's, chosen for the
device; the choice is printed):
    python inference/predict.py pic.jpg                     # writes pic_landmarks.jpg
    python inference/predict.py photos/ --eyes --json out.json --output out
    python inference/predict.py --help                      # options, JSON, exit codes
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from common.cli import run_script  # noqa: E402
from common.predict_cli import get_args_parser, main  # noqa: E402

if __name__ == "__main__":
    parser = get_args_parser()
    parser.set_defaults(device="auto")
    run_script(main, parser)
