"""The 68-point scheme: regions, eye indices, the left/right flip permutation."""
import numpy as np
import pytest

from common import landmarks as L
from common import transforms as T
from synthetic import TEMPLATE, make_face


def test_regions_cover_every_point_once():
    outer = [r for name, r in L.REGIONS_68.items() if name != "inner_mouth"]
    assert sorted(i for lo, hi in outer for i in range(lo, hi)) == list(range(68))
    (lo, hi), (mlo, mhi) = L.REGIONS_68["inner_mouth"], L.REGIONS_68["mouth"]
    assert mlo <= lo < hi <= mhi
    assert L.REGIONS_68["right_eye"] == (36, 42) and L.REGIONS_68["left_eye"] == (42, 48)
    # "right" is the subject's right: the left of the photo (the template is written independently)
    assert TEMPLATE[36:42, 0].mean() < TEMPLATE[42:48, 0].mean()


def test_eye_indices_and_normalisation_pair():
    assert L.EYE_INDICES == tuple(range(36, 48))
    assert L.FACE_INDICES == tuple(range(68))
    assert L.normalisation_pair(L.FACE_INDICES) == (36, 45)
    assert L.normalisation_pair(L.EYE_INDICES) == (0, 9)


def test_region_of_point():
    assert L.region_of_point(0) == "jaw"
    assert L.region_of_point(36) == "right_eye"
    assert L.region_of_point(45) == "left_eye"
    assert L.region_of_point(62) == "inner_mouth"
    assert L.region_of_point(50) == "mouth"
    with pytest.raises(ValueError):
        L.region_of_point(68)


def test_flip_permutation_is_an_involution():
    perm = np.array(L.FLIP_PERMUTATION_68)
    assert sorted(perm) == list(range(68))
    assert (perm[perm] == np.arange(68)).all()
    # Points on the vertical mid-line are their own mirror, the others are not.
    centre = {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}
    assert {i for i in range(68) if perm[i] == i} == centre
    # Mirroring keeps every point in the same kind of region (eye to eye, ...).
    for i in range(68):
        a, b = L.region_of_point(i), L.region_of_point(int(perm[i]))
        assert a.replace("left_", "").replace("right_", "") == b.replace("left_", "").replace("right_", "")


def test_flip_permutation_matches_hand_written_template():
    """The template (written independently of common.landmarks) is symmetric,
    so reflecting it about x = 0 and re-indexing must give it back."""
    mirrored = TEMPLATE.copy()
    mirrored[:, 0] *= -1
    np.testing.assert_allclose(mirrored[list(L.FLIP_PERMUTATION_68)], TEMPLATE, atol=1e-9)


def test_flip_permutation_for_eye_subset():
    perm = L.flip_permutation(L.EYE_INDICES)
    assert sorted(perm) == list(range(12))
    assert [perm[p] for p in perm] == list(range(12))
    assert perm[0] == 9 and perm[9] == 0          # outer corners 36 <-> 45
    assert perm[3] == 6                            # inner corners 39 <-> 42
    full = L.flip_permutation(L.FACE_INDICES)
    assert tuple(full) == L.FLIP_PERMUTATION_68
    # Mirroring the 12 eye points with the subset permutation is the same as
    # mirroring all 68 and keeping 36-47.
    rng = np.random.default_rng(0)
    img, pts = make_face(rng)
    _, m68 = T.mirror(img, pts)
    _, m12 = T.mirror(img, pts[36:48], permutation=tuple(perm))
    np.testing.assert_array_equal(m12, m68[36:48])


def test_flip_permutation_rejects_open_subset():
    with pytest.raises(ValueError, match="not closed"):
        L.flip_permutation([36, 37, 38])


def test_landmark_box_and_eye_aspect_ratio():
    pts = np.array([[3, 4], [10, 2], [5, 9]], np.float32)
    box = L.landmark_box(pts)
    assert box.dtype == np.float32
    np.testing.assert_array_equal(box, [3, 2, 10, 9])
    eye = np.array([[0, 0], [1, -1], [2, -1], [3, 0], [2, 1], [1, 1]], np.float32)
    assert L.eye_aspect_ratio(eye) == pytest.approx(2 / 3)
    assert L.eye_aspect_ratio(np.zeros((6, 2))) == 0.0


def test_mirror_twice_is_identity():
    rng = np.random.default_rng(3)
    img, pts = make_face(rng, 48, 70)
    img2, pts2 = T.mirror(*T.mirror(img, pts))
    np.testing.assert_array_equal(img2, img)
    np.testing.assert_allclose(pts2, pts, atol=1e-4)
    gray = img[..., 0]
    g2, p2 = T.mirror(*T.mirror(gray, pts))
    np.testing.assert_array_equal(g2, gray)


def test_mirror_keeps_points_on_their_features():
    rng = np.random.default_rng(4)
    img, pts = make_face(rng, 50, 73)          # odd width: the mirror axis is a pixel centre
    m_img, m_pts = T.mirror(img, pts)
    assert m_img.shape == img.shape
    # Point i of the mirrored face sits where its partner was, reflected.
    perm = list(L.FLIP_PERMUTATION_68)
    np.testing.assert_allclose(m_pts[:, 0], 72 - pts[perm, 0], atol=1e-4)
    np.testing.assert_allclose(m_pts[:, 1], pts[perm, 1], atol=1e-4)
    # The subject's right eye (36-41) stays on the left of the photo.
    assert m_pts[36:42, 0].mean() < m_pts[42:48, 0].mean()
    assert m_pts[0, 0] < m_pts[16, 0]
    # The pixels under each mirrored point are those under the original point.
    for i in range(68):
        mx, my = np.round(m_pts[i]).astype(int)
        ox, oy = np.round(pts[perm[i]]).astype(int)
        assert (mx, my) == (72 - ox, oy)
        assert (m_img[my, mx] == img[oy, ox]).all()
