r"""Measure how far a data set's annotation sits from mirror symmetry, in pixels.

    python training/tools/mirror_offset.py --weights weights/face.pt \
        --data ../shared/data/300w-subset/labels_300w_subset_train.xml --split train

Training mirrors faces and reflects their points with x -> (width - 1) - x.
That is exact only if the annotation places points where a mirrored
annotation would: if a data set's points sit ``c`` pixels right of that (a
pixel convention, say), every mirrored copy teaches points ``2c`` too far
left, and a model trained with mirroring splits the difference. This script
prints, over the faces of ``--data`` (landmark boxes, no second pass):

- the mean signed error (prediction minus annotation) in x and y, in photo
  pixels and in % of the 36-45 distance: for a model trained on this data
  WITH plain mirroring, ``c`` is about minus the mean x error;
- the mean x disagreement between the prediction and the un-mirrored
  prediction on the mirrored crop, halved: for a model trained on this data
  WITHOUT mirroring, ``c`` is about this;
- both again for the smaller, middle and larger thirds of the faces: an
  offset that stays the same in pixels is a pixel convention of the data.

Pass the estimate to training as ``--mirror-offset`` (the shipped data's:
``docs/history.md``, *Mirroring and the annotation's offset*). Measure on training faces (``--split train``)
so the held-out ones stay untouched. The last line is machine-readable.

The half disagreement is also printed in the model's input pixels: that is
the model's own offset, which ``--flip-test`` must keep when it averages
with the mirrored crop. ``--write OUT`` saves a copy of the checkpoint that
records it (``mirror_offset`` in its description, carried into ONNX exports),
so ``--flip-test`` uses it:

    python training/tools/mirror_offset.py --weights runs/face/2/best.pt --data $XML --split train \
        --write runs/face/2/best_flip.pt
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from common.errors import InputError  # noqa: E402
from common.model_options import add_device_argument, add_weights_argument  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_argument(p, "face or eye checkpoint", file="face.pt")
    p.add_argument("--data", required=True, help="dlib XML, folder of .pts files, or keypoints CSV")
    p.add_argument("--split", choices=("all", "heldout", "train"), default="train",
                   help="train (default): the faces the checkpoint's run trained on; all: every face "
                        "(for data the run never saw)")
    p.add_argument("--max-faces", type=int, default=0, help="use at most this many faces, evenly spread (0: all)")
    p.add_argument("--write", metavar="OUT", default=None,
                   help="save a copy of the .pt checkpoint that records the measured offset for --flip-test")
    p.add_argument("--force", action="store_true", help="with --write: replace an existing OUT")
    add_device_argument(p)
    return p


def main(args: argparse.Namespace) -> int:
    from common.cli import output_problem
    from common.dataset import split_like_run
    from common.readers import read_datasets
    from common.device import select_device
    from common.images import read_image
    from common.landmarks import landmark_box, normalisation_pair
    from common.landmark_model import LandmarkModel
    from common.progress import Progress
    from common.transforms import task_region

    if args.write:
        if not args.weights.endswith(".pt"):
            raise InputError("--write needs a .pt checkpoint (export the ONNX file again from the written one)")
        problem = output_problem(args.write, args.weights, args.force)
        if problem:
            raise InputError(problem)
    model = LandmarkModel(args.weights, None, select_device(args.device))
    records = read_datasets([args.data])
    if args.split != "all":
        train, held = split_like_run(records, model.description.get("config", {}))
        records = held if args.split == "heldout" else train
    if args.max_faces and len(records) > args.max_faces:
        records = [records[i] for i in np.linspace(0, len(records) - 1, args.max_faces).astype(int)]
    if not records:
        raise InputError(f"no faces in {args.data} [{args.split}]")
    pair = normalisation_pair(model.indices)
    err, dis, iod, scale = [], [], [], []
    bar = Progress(len(records), desc="predicting", unit="faces")
    for k, r in enumerate(records):
        gray = read_image(r.image_path, gray=True)
        box = [landmark_box(r.points)]
        plain = model.predict_boxes(gray, box, flip=False)[0]
        mean = model.predict_boxes(gray, box, flip=True)[0]  # (plain + un-mirrored mirrored) / 2
        gt = r.points[list(model.indices)]
        err.append(plain - gt)
        dis.append(plain - (2 * mean - plain))
        iod.append(float(np.linalg.norm(gt[pair[0]] - gt[pair[1]])))
        scale.append(model.input_size / max(round(task_region(model.task, box[0]).side), 1))  # input px per photo px
        bar.update(k + 1, k + 1)
    bar.close()
    err, dis, iod, scale = np.stack(err), np.stack(dis), np.array(iod), np.array(scale)
    rel = err / iod[:, None, None] * 100
    # predict_boxes(flip=True) already keeps a recorded offset: add it back to measure the model itself.
    half_face = dis[..., 0].mean(1) / 2 + model.flip_offset / scale     # photo pixels, per face
    dx, dy, half = float(err[..., 0].mean()), float(err[..., 1].mean()), float(half_face.mean())
    half_in = float((half_face * scale).mean())
    print(f"weights: {args.weights} ({model.description['task']} model); data: {args.data} [{args.split}], "
          f"{len(records)} faces, 36-45 distance {iod.mean():.0f} px on average")
    print(f"mean signed error: x {dx:+.2f} px ({rel[..., 0].mean():+.2f}%), y {dy:+.2f} px "
          f"({rel[..., 1].mean():+.2f}%)  -> offset if trained WITH plain mirroring: {-dx:+.2f} px")
    print(f"mirror disagreement / 2: x {half:+.2f} px  -> offset if trained WITHOUT mirroring: {half:+.2f} px; "
          f"the model's own offset (for --flip-test): {half_in:+.3f} input px")
    # A pixel convention shifts every face by the same pixels; a habit of the
    # annotators would scale with the face. Thirds by 36-45 distance tell which.
    thirds = np.array_split(np.argsort(iod), 3) if len(iod) >= 3 else [np.arange(len(iod))]
    print("by face size (36-45 distance): " + ", ".join(
        f"{iod[k].min():.0f}-{iod[k].max():.0f} px: x error {err[k][..., 0].mean():+.2f} px, "
        f"disagreement / 2 {half_face[k].mean():+.2f} px" for k in thirds))
    if args.write:
        import torch
        from common.checkpoint import atomic_save
        ckpt = torch.load(args.weights, map_location="cpu", weights_only=True)   # as stored (float16 stays)
        ckpt["mirror_offset"] = {"input_px": round(half_in, 4), "photo_px": round(half, 4),
                                 "data": os.path.basename(os.path.normpath(args.data)), "split": args.split,
                                 "faces": len(records)}
        atomic_save(ckpt, args.write)
        print(f"wrote {args.write}: --flip-test keeps {half_in:+.3f} input px")
    print(f"dx={dx:.3f} dy={dy:.3f} half_disagreement={half:.3f} input_px={half_in:.4f} n={len(records)}")
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
