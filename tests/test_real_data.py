"""Readers and crops on the real faces in ../shared/data (skipped when it is absent)."""
import os

import numpy as np
import pytest

from common import readers as D
from common import transforms as T
from common.dataset import split_records
from common.images import read_image
from common.landmarks import EYE_INDICES, FACE_INDICES, landmark_box


@pytest.fixture(scope="module")
def w300(shared_data):
    folder = os.path.join(shared_data, "300w-subset")
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} not found")
    return folder


@pytest.fixture(scope="module")
def xml_records(w300):
    return D.read_dataset(os.path.join(w300, "labels_300w_subset_train.xml"))


@pytest.fixture(scope="module")
def youtube(shared_data):
    folder = os.path.join(shared_data, "youtube-faces-keypoints")
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} not found")
    return folder


def test_300w_xml(xml_records, w300):
    assert len(xml_records) == 1207
    assert all(os.path.isfile(r.image_path) for r in xml_records)
    assert sum(r.image_path.startswith(os.path.join(w300, "afw") + os.sep) for r in xml_records) == 337
    for r in xml_records:
        # The XML box is the bounding box of the 68 points. Its width and height
        # were written as (max - min) of unrounded points, not dlib's inclusive
        # (right - left + 1), so the right and bottom edges read 0-2 px short.
        d = r.box - landmark_box(r.points)
        assert (d[:2] == 0).all() and (d[2:] <= 0).all() and (d[2:] >= -2).all(), r.source


def test_300w_pts_folders_match_the_xml(xml_records, w300):
    pts_records = D.read_dataset(w300)
    assert len(pts_records) == len(xml_records) == 1207
    by_image = {r.image_path: r for r in pts_records}
    assert set(by_image) == {r.image_path for r in xml_records}
    worst = 0.0
    for r in xml_records:
        # The XML holds the same 0-based points rounded to whole pixels.
        d = np.abs(by_image[r.image_path].points - r.points).max()
        worst = max(worst, float(d))
    assert worst <= 1.0, worst
    # Faces of one AFW photo share a group.
    groups = [r.group for r in pts_records if r.group.startswith("afw/")]
    assert len(set(groups)) < len(groups)


def test_youtube_csvs(youtube):
    train = D.read_dataset(os.path.join(youtube, "training_frames_keypoints.csv"))
    test = D.read_dataset(os.path.join(youtube, "test_frames_keypoints.csv"))
    assert (len(train), len(test)) == (3462, 770)
    assert all(r.image_path.startswith(os.path.join(youtube, "training") + os.sep) for r in train)
    assert all(r.image_path.startswith(os.path.join(youtube, "test") + os.sep) for r in test)
    for r in train[:: len(train) // 5][:5] + test[:3]:
        h, w = read_image(r.image_path).shape[:2]
        inside = (r.points[:, 0] > -3) & (r.points[:, 0] < w + 2) & (r.points[:, 1] > -3) & (r.points[:, 1] < h + 2)
        assert inside.mean() > 0.9, r.image_path


def test_real_face_crops_hold_the_points(xml_records, youtube):
    yt = D.read_dataset(os.path.join(youtube, "test_frames_keypoints.csv"))
    faces = xml_records[::300][:4] + yt[::250][:3]
    for r in faces:
        rgb = read_image(r.image_path)
        gray = read_image(r.image_path, gray=True)
        assert rgb.ndim == 3 and rgb.shape[:2] == gray.shape and rgb.dtype == gray.dtype == np.uint8
        for task, idx in (("face", FACE_INDICES), ("eyes", EYE_INDICES)):
            x, p, region = T.eval_pipeline(task, 128, idx, 0.5, 0.25)(gray, r.points, landmark_box(r.points))
            assert x.shape == (1, 128, 128)
            assert (p >= 0).all() and (p <= 127).all(), (r.image_path, task)
            np.testing.assert_allclose(T.region_to_image(p, region, 128), r.points[list(idx)], atol=0.01)


def test_split_of_both_sets_keeps_photos_together(w300, youtube):
    xml = os.path.join(w300, "labels_300w_subset_train.xml")
    csv_path = os.path.join(youtube, "training_frames_keypoints.csv")
    recs = D.read_datasets([xml, csv_path])
    assert len(recs) == 1207 + 3462
    train, val = split_records(recs, 0.2, seed=0, val_from=[D.dataset_name(xml)])
    assert val and all(r.group.startswith("labels_300w_subset_train.xml::") for r in val)
    assert not {r.group for r in train} & {r.group for r in val}
    assert 0.1 < len(val) / 1207 < 0.3
