"""The three dataset readers on small generated files, well-formed and malformed."""
import os

import numpy as np
import pytest

from common import readers as D
from common.dataset import split_records
from synthetic import (csv_header, csv_row, make_face, pts_text, save_image, write_dlib_xml,
                       write_keypoints_csv, write_pts)


def _faces(n, seed=0, h=64, w=80):
    rng = np.random.default_rng(seed)
    return [make_face(rng, h, w) for _ in range(n)]


# --- dlib XML --------------------------------------------------------------------------------

@pytest.fixture
def xml_set(tmp_path):
    """labels/set.xml with 3 faces in pics/group.png, 1 in ../other/solo_2.jpg."""
    faces = _faces(4)
    save_image(str(tmp_path / "labels" / "pics" / "group.png"), faces[0][0])
    save_image(str(tmp_path / "other" / "solo_2.jpg"), faces[3][0])
    entries = [("pics/group.png", [f[1] for f in faces[:3]]), ("../other/solo_2.jpg", [faces[3][1]])]
    path = str(tmp_path / "labels" / "set.xml")
    write_dlib_xml(path, entries)
    return path, faces, entries


def test_dlib_xml_several_boxes_paths_relative_to_the_xml(xml_set, tmp_path, monkeypatch):
    path, faces, entries = xml_set
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)                     # paths must not depend on the cwd
    recs = D.read_dlib_xml(path)
    assert len(recs) == 4
    assert [r.image_path for r in recs] == [str(tmp_path / "labels" / "pics" / "group.png")] * 3 + \
        [str(tmp_path / "other" / "solo_2.jpg")]
    for r, (_, pts) in zip(recs, faces):
        assert r.points.dtype == np.float32 and r.points.shape == (68, 2)
        np.testing.assert_allclose(r.points, pts, atol=0.006)   # written with 2 decimals
        # The box is (left, top, right, bottom), inclusive, holding the points.
        x0, y0, x1, y1 = r.box
        assert x0 <= r.points[:, 0].min() and r.points[:, 0].max() <= x1
        assert y0 <= r.points[:, 1].min() and r.points[:, 1].max() <= y1
    assert {r.group for r in recs[:3]} == {"pics/group"}
    assert recs[3].group == "../other/solo"
    again = D.read_dataset(path)
    assert [r.image_path for r in again] == [r.image_path for r in recs]
    assert all(np.array_equal(a.points, b.points) for a, b in zip(again, recs))


def test_dlib_xml_box_convention(tmp_path):
    pts = _faces(1)[0][1]
    save_image(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    parts = [(f"{k:02d}", f"{x:.2f}", f"{y:.2f}") for k, (x, y) in enumerate(pts)]
    (tmp_path / "b.xml").write_text(
        "<dataset><images><image file='a.png'><box top='10' left='20' width='30' height='40'>"
        + "".join(f"<part name='{n}' x='{x}' y='{y}'/>" for n, x, y in parts)
        + "</box></image></images></dataset>")
    (r,) = D.read_dlib_xml(str(tmp_path / "b.xml"))
    np.testing.assert_array_equal(r.box, [20, 10, 49, 49])


def _bad_xml(tmp_path, kind):
    faces = _faces(2)
    save_image(str(tmp_path / "ok.png"), faces[0][0])
    entries = [("ok.png", [faces[0][1], faces[1][1]])]
    override = {}
    if kind == "missing image":
        entries.append(("gone.png", [faces[1][1]]))
    elif kind == "wrong point count":
        override[(0, 1)] = [(f"{k:02d}", "1.0", "2.0") for k in range(67)]
    elif kind == "non-number":
        override[(0, 1)] = [(f"{k:02d}", "abc" if k == 5 else "1.0", "2.0") for k in range(68)]
    path = str(tmp_path / "bad.xml")
    write_dlib_xml(path, entries, override)
    return path


@pytest.mark.parametrize("kind,expect", [
    ("missing image", ["<image file='gone.png'>", "image not found", "gone.png"]),
    ("wrong point count", ["<image file='ok.png'>", "<box> #2", "got 67 parts"]),
    ("non-number", ["<image file='ok.png'>", "<box> #2", "<part name='05'>", "non-number"]),
])
def test_dlib_xml_malformed(tmp_path, capsys, kind, expect):
    path = _bad_xml(tmp_path, kind)
    with pytest.raises(D.DatasetFormatError) as err:
        D.read_dataset(path)
    msg = str(err.value)
    assert msg.startswith(path + ":")
    for e in expect:
        assert e in msg
    recs = D.read_dataset(path, skip_bad=True)
    assert len(recs) == (2 if kind == "missing image" else 1)
    out = capsys.readouterr().err
    assert f"{path}: skipped 1 bad record(s)" in out


def test_dlib_xml_not_xml(tmp_path):
    p = tmp_path / "broken.xml"
    p.write_text("<dataset><images><image file='a.png'>")
    with pytest.raises(D.DatasetFormatError, match="broken.xml: not valid XML"):
        D.read_dlib_xml(str(p))
    p.write_text("<dataset></dataset>")
    with pytest.raises(D.DatasetFormatError, match="no <images> element"):
        D.read_dlib_xml(str(p))


# --- 300-W .pts folders ----------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".jpg", ".png", ".jpeg", ".bmp", ".JPG"])
def test_pts_file_one_based_to_zero_based(tmp_path, ext):
    img, pts = _faces(1)[0]
    write_pts(str(tmp_path / "face_1.pts"), pts)
    save_image(str(tmp_path / f"face_1{ext}"), img)
    got = D.read_pts_file(str(tmp_path / "face_1.pts"))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, pts, atol=6e-4)
    (r,) = D.read_dataset(str(tmp_path))
    assert r.image_path == str(tmp_path / f"face_1{ext}")
    assert r.group == "face"
    (r1,) = D.read_dataset(str(tmp_path / "face_1.pts"))       # a single file
    np.testing.assert_array_equal(r1.points, r.points)
    assert r1.image_path == r.image_path


def test_pts_folder_recursive_sorted(tmp_path):
    faces = _faces(4)
    names = ["afw/111_1", "afw/111_2", "helen/trainset/222_1", "helen/trainset/333_1"]
    exts = [".jpg", ".jpg", ".png", ".jpeg"]
    for (img, pts), n, e in zip(faces[::-1], names[::-1], exts[::-1]):
        write_pts(str(tmp_path / (n + ".pts")), pts)
        save_image(str(tmp_path / (n + e)), img)
    recs = D.read_pts_folder(str(tmp_path))
    assert [os.path.relpath(r.image_path, tmp_path) for r in recs] == [n + e for n, e in zip(names, exts)]
    assert [r.group for r in recs] == ["afw/111", "afw/111", "helen/trainset/222", "helen/trainset/333"]
    for r, (_, pts) in zip(recs, faces):
        np.testing.assert_allclose(r.points, pts, atol=6e-4)
        assert r.box is None


def _bad_pts(tmp_path, kind):
    faces = _faces(3)
    for i, (img, pts) in enumerate(faces):
        write_pts(str(tmp_path / f"f{i}.pts"), pts)
        save_image(str(tmp_path / f"f{i}.jpg"), img)
    bad = tmp_path / "f1.pts"
    pts = faces[1][1]
    if kind == "missing image":
        os.remove(tmp_path / "f1.jpg")
    elif kind == "wrong point count":
        bad.write_text(pts_text(pts[:67], n_points=68))
    elif kind == "non-number":
        text = pts_text(pts).splitlines()
        text[3 + 9] = "12.5 x7"                                # point 10, file line 13
        bad.write_text("\n".join(text) + "\n")
    return str(bad)


@pytest.mark.parametrize("kind,expect", [
    ("missing image", ["no image beside it"]),
    ("wrong point count", ["n_points says 68, found 67"]),
    ("non-number", ["line 13", "expected two numbers", "'12.5 x7'"]),
])
def test_pts_malformed(tmp_path, capsys, kind, expect):
    bad = _bad_pts(tmp_path, kind)
    with pytest.raises(D.DatasetFormatError) as err:
        D.read_dataset(str(tmp_path))
    msg = str(err.value)
    assert msg.startswith(bad + ":")
    for e in expect:
        assert e in msg
    recs = D.read_dataset(str(tmp_path), skip_bad=True)
    assert [os.path.basename(r.image_path) for r in recs] == ["f0.jpg", "f2.jpg"]
    assert f"{tmp_path}: skipped 1 bad record(s)" in capsys.readouterr().err


def test_pts_count_without_n_points_line(tmp_path):
    p = tmp_path / "x.pts"
    p.write_text("{\n" + "\n".join("1 2" for _ in range(66)) + "\n}\n")
    with pytest.raises(D.DatasetFormatError, match=r"x\.pts: expected 68 points, got 66"):
        D.read_pts_file(str(p))
    p.write_text("\n".join("1 2" for _ in range(68)))
    with pytest.raises(D.DatasetFormatError, match="between '{' and '}'"):
        D.read_pts_file(str(p))


def test_pts_empty_folder(tmp_path):
    with pytest.raises(D.DatasetFormatError, match="no .pts files"):
        D.read_dataset(str(tmp_path))
    with pytest.raises(D.DatasetFormatError, match="no .pts files"):
        D.read_dataset(str(tmp_path), skip_bad=True)


# --- keypoints CSV ---------------------------------------------------------------------------

def test_keypoints_csv_images_in_split_folder(tmp_path):
    faces = _faces(3)
    names = ["Abdel_Aziz_01.jpg", "Abdel_Aziz_02.jpg", "Zoe_Ball_10.jpg"]
    for (img, _), n in zip(faces, names):
        save_image(str(tmp_path / "training" / n), img)
    path = str(tmp_path / "training_frames_keypoints.csv")
    write_keypoints_csv(path, [(n, pts) for n, (_, pts) in zip(names, faces)])
    recs = D.read_dataset(path)
    assert [r.image_path for r in recs] == [str(tmp_path / "training" / n) for n in names]
    assert [r.group for r in recs] == ["Abdel_Aziz", "Abdel_Aziz", "Zoe_Ball"]
    for r, (_, pts) in zip(recs, faces):
        assert r.points.dtype == np.float32
        np.testing.assert_allclose(r.points, pts, atol=6e-4)     # 0-based, not shifted
    # An explicit image folder wins; a name without '_' maps to its stem.
    os.rename(tmp_path / "training", tmp_path / "imgs")
    assert len(D.read_keypoints_csv(path, image_dir=str(tmp_path / "imgs"))) == 3
    os.rename(tmp_path / "imgs", tmp_path / "faces")
    os.rename(path, tmp_path / "faces.csv")
    assert len(D.read_dataset(str(tmp_path / "faces.csv"))) == 3


def _bad_csv(tmp_path, kind):
    faces = _faces(3)
    rows = []
    for i, (img, pts) in enumerate(faces):
        save_image(str(tmp_path / "test" / f"c_{i}.jpg"), img)
        rows.append(csv_row(f"c_{i}.jpg", pts))
    if kind == "missing image":
        rows[1] = csv_row("nobody_1.jpg", faces[1][1])
    elif kind == "wrong point count":
        rows[1] = csv_row("c_1.jpg", faces[1][1][:67])
    elif kind.startswith("out of range"):
        f = rows[1].split(",")
        f[20] = kind.split()[-1]
        rows[1] = ",".join(f)
    elif kind == "non-number":
        f = rows[1].split(",")
        f[20] = "n/a"
        rows[1] = ",".join(f)
    path = str(tmp_path / "test_frames_keypoints.csv")
    with open(path, "w") as fh:
        fh.write("\n".join([csv_header()] + rows + [""]))
    return path


@pytest.mark.parametrize("kind,expect", [
    ("missing image", ["line 3", "image not found", "nobody_1.jpg"]),
    ("wrong point count", ["line 3", "135 fields"]),
    ("non-number", ["line 3", "not a number", "'n/a'"]),
    # Finite but no photo's: before, an OverflowError or a cv2.error deep in training.
    ("out of range 1e308", ["line 3", "out of range"]),
    ("out of range 1e30", ["line 3", "out of range"]),
    ("out of range 100000", ["line 3", "out of range"]),
    ("out of range -40000", ["line 3", "out of range"]),
])
def test_keypoints_csv_malformed(tmp_path, capsys, kind, expect):
    path = _bad_csv(tmp_path, kind)
    with pytest.raises(D.DatasetFormatError) as err:
        D.read_dataset(path)
    msg = str(err.value)
    assert msg.startswith(path + ":")
    for e in expect:
        assert e in msg
    recs = D.read_dataset(path, skip_bad=True)
    assert [os.path.basename(r.image_path) for r in recs] == ["c_0.jpg", "c_2.jpg"]
    err_out = capsys.readouterr().err
    assert f"{path}: skipped 1 bad record(s); first: {path}: line 3" in err_out


def test_keypoints_csv_blank_lines_and_non_finite(tmp_path):
    img, pts = _faces(1)[0]
    save_image(str(tmp_path / "t" / "a_1.jpg"), img)
    row = csv_row("a_1.jpg", pts)
    path = tmp_path / "t.csv"
    path.write_text(csv_header() + "\n\n" + row + "\n" + "," * 136 + "\n")
    assert len(D.read_dataset(str(path))) == 1
    assert len(D.read_dataset(str(path), skip_bad=True)) == 1
    f = row.split(",")
    f[7] = "nan"
    path.write_text(csv_header() + "\n" + ",".join(f) + "\n")
    with pytest.raises(D.DatasetFormatError, match="line 2: non-finite"):
        D.read_dataset(str(path))


# --- format detection, several datasets, the split --------------------------------------------

def test_dataset_format(tmp_path):
    assert D.dataset_format(str(tmp_path)) == "pts"
    assert D.dataset_format("x/labels.xml") == "xml"
    assert D.dataset_format("x/keypoints.CSV") == "csv"
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(D.DatasetFormatError, match="unknown dataset format"):
        D.dataset_format(str(tmp_path / "a.txt"))
    with pytest.raises(D.DatasetFormatError, match="no such file"):
        D.read_dataset(str(tmp_path / "nothing.xml"))
    with pytest.raises(D.DatasetFormatError, match="no such file"):
        D.dataset_format(str(tmp_path / "nothing.json"))


def test_photo_group():
    assert D.photo_group("afw/1051618982_2.jpg") == "afw/1051618982"
    assert D.photo_group("training/Abdel_Aziz_Al-Hakim_01.jpg") == "training/Abdel_Aziz_Al-Hakim"
    assert D.photo_group("helen/trainset/100032540_1.jpg") == "helen/trainset/100032540"


def test_read_datasets_prefixes_groups_and_split_keeps_groups_together(xml_set, tmp_path):
    path, _, _ = xml_set
    img, pts = _faces(1, seed=9)[0]
    save_image(str(tmp_path / "p" / "q_1.png"), img)
    write_pts(str(tmp_path / "p" / "q_1.pts"), pts)
    recs = D.read_datasets([path, str(tmp_path / "p")])
    assert [r.group for r in recs] == ["set.xml::pics/group"] * 3 + ["set.xml::../other/solo", "p::q"]
    # Many groups of several faces: each group lands on one side, the same every time.
    many = [D.FaceRecord("x", pts, group=f"d::{g}") for g in range(200) for _ in range(3)]
    train, val = split_records(many, 0.25, seed=0)
    assert 0.15 < len(val) / len(many) < 0.35
    assert not {r.group for r in train} & {r.group for r in val}
    groups = lambda recs: [r.group for r in recs]  # noqa: E731
    assert groups(split_records(many, 0.25, seed=0)[1]) == groups(val)
    assert groups(split_records(many, 0.25, seed=1)[1]) != groups(val)
    # val_from: only the named dataset may give validation faces.
    mixed = many + [D.FaceRecord("y", pts, group=f"other::{g}") for g in range(50)]
    _, v = split_records(mixed, 0.5, seed=0, val_from=["d"])
    assert v and all(r.group.startswith("d::") for r in v)
