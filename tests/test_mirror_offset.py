"""inference/mirror_offset.py: its two estimates of a data set's horizontal
annotation offset, on generated faces with a model of known behaviour."""
from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from inference_helpers import REPO
from synthetic import synthetic_xml_dataset


def _script():
    spec = importlib.util.spec_from_file_location("mirror_offset", REPO / "inference" / "mirror_offset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _KnownModel:
    """Predicts the annotation shifted by ``(a, b)``; on the mirrored crop
    (averaged in, as ``predict_boxes(flip=True)`` does) ``2h`` further left."""
    indices = tuple(range(68))
    description = {"task": "face", "config": {}}

    def __init__(self, truth: dict, a: float, b: float, h: float):
        self.truth, self.a, self.b, self.h = truth, a, b, h

    def predict_boxes(self, gray, boxes, flip=None):
        gt = self.truth[gray.shape + (round(float(boxes[0][0]), 3),)]
        plain = gt + np.float32([self.a, self.b])
        mirrored = plain - np.float32([2 * self.h, 0])
        return ((plain + mirrored) / 2 if flip else plain)[None]


@pytest.mark.parametrize("a,b,h", [(-0.8, 0.1, 0.0), (0.0, -0.3, 1.0), (0.4, 0.0, -0.5)])
def test_estimates_match_a_model_of_known_behaviour(tmp_path, monkeypatch, capsys, a, b, h):
    from common.datasets import read_datasets
    from common.imageio import read_image
    from common.landmarks import landmark_box
    import common.predictor
    data = synthetic_xml_dataset(str(tmp_path / "data"), 4, seed=5)
    truth = {read_image(r.image_path, gray=True).shape + (round(float(landmark_box(r.points)[0]), 3),): r.points
             for r in read_datasets([data])}
    monkeypatch.setattr(common.predictor, "load_landmark_model", lambda *_: _KnownModel(truth, a, b, h))
    mod = _script()
    assert mod.main(mod.get_args_parser().parse_args(["--data", data, "--split", "all", "--device", "cpu"])) == 0
    out = capsys.readouterr().out
    m = re.search(r"^dx=(\S+) dy=(\S+) half_disagreement=(\S+) n=4$", out, re.M)
    assert m, out
    np.testing.assert_allclose([float(v) for v in m.groups()], [a, b, h], atol=2e-3)
    assert f"offset if trained WITH plain mirroring: {-a:+.2f} px" in out
    assert f"offset if trained WITHOUT mirroring: {h:+.2f} px" in out
