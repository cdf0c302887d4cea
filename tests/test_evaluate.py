"""inference/evaluate.py end to end on generated faces: the printed scores,
the machine-readable last line, the CED plot, and its refusals."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from inference_helpers import REPO, make_random_checkpoint
from synthetic import synthetic_xml_dataset

EVALUATE = REPO / "inference" / "evaluate.py"
LAST_LINE = re.compile(r"^NME=\d+\.\d\d median=\d+\.\d\d FR8=\d+\.\d FR10=\d+\.\d AUC8=\d+\.\d n=(\d+)$")


def _run(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(EVALUATE), *map(str, args)], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    return {"data": synthetic_xml_dataset(str(d / "data"), 5, seed=2),
            "face": make_random_checkpoint(d / "face.pt", "face"),
            "eyes": make_random_checkpoint(d / "eyes.pt", "eyes"), "dir": d}


@pytest.mark.parametrize("task,points,n_points", [("face", "all", 68), ("eyes", "all", 12), ("face", "eyes", 12)])
def test_scores_and_last_line(setup, task, points, n_points):
    ced = setup["dir"] / f"ced_{task}_{points}.png"
    r = _run("--weights", setup[task], "--data", setup["data"], "--points", points, "--ced", ced, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    m = LAST_LINE.match(lines[-1])
    assert m and int(m.group(1)) == 5, lines[-1]
    assert f"points: {points} ({n_points})" in r.stdout and "faces: 5" in r.stdout
    assert ced.is_file() and ced.stat().st_size > 1000


def test_heldout_needs_a_run_that_held_this_data_out(setup):
    r = _run("--weights", setup["face"], "--data", setup["data"], "--split", "heldout", "--device", "cpu")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and str(setup["face"]) in r.stderr


def test_bad_weights_are_one_line(setup, tmp_path):
    bad = tmp_path / "face.pt"
    bad.write_bytes(b"not a checkpoint")
    r = _run("--weights", bad, "--data", setup["data"], "--device", "cpu")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr


def test_ced_plots_of_different_runs_do_not_replace_each_other(setup, tmp_path):
    # Two checkpoints of one name in different run folders.
    other = make_random_checkpoint(tmp_path / "face.pt", "face")
    assert os.path.basename(other) == os.path.basename(setup["face"])
    plots = []
    for w in (setup["face"], other):
        r = _run("--weights", w, "--data", setup["data"], "--device", "cpu")
        assert r.returncode == 0, r.stderr
        plots.append(re.search(r"CED plot: (\S+)", r.stdout).group(1))
    assert plots[0] != plots[1] and all((REPO / p).is_file() for p in plots)
    for p in plots:
        os.remove(REPO / p)
    r = _run("--weights", setup["face"], "--data", setup["data"], "--device", "cpu", "--ced", setup["data"])
    assert r.returncode == 2 and "--force" in r.stderr


def test_skip_bad_skips_malformed_records(setup, tmp_path):
    xml = open(setup["data"]).read()
    bad = tmp_path / "bad.xml"
    folder = os.path.dirname(setup["data"])
    xml = xml.replace("file='", f"file='{folder}/", ).replace('file="', f'file="{folder}/')
    bad.write_text(xml.replace("<part name='00' x='", "<part name='00' x='oops", 1))
    r = _run("--weights", setup["face"], "--data", bad, "--device", "cpu", "--ced", tmp_path / "c.png")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = _run("--weights", setup["face"], "--data", bad, "--device", "cpu", "--ced", tmp_path / "d.png", "--skip-bad")
    assert r.returncode == 0 and "skipped 1 bad record" in r.stderr, r.stderr


def test_degrade_scores_the_same_faces_on_damaged_photos(setup, tmp_path):
    weights = REPO / "weights" / "face.pt"
    clean = _run("--weights", weights, "--data", setup["data"], "--ced", tmp_path / "a.png", "--device", "cpu")
    dim = _run("--weights", weights, "--data", setup["data"], "--degrade", "dark", "--ced", tmp_path / "b.png",
               "--device", "cpu")
    assert clean.returncode == 0 and dim.returncode == 0, dim.stderr
    assert "degraded: dark" in dim.stdout and "degraded" not in clean.stdout
    n = [LAST_LINE.match(r.stdout.strip().splitlines()[-1]) for r in (clean, dim)]
    assert n[0] and n[1] and n[0].group(1) == n[1].group(1) == "5"
    assert clean.stdout.strip().splitlines()[-1] != dim.stdout.strip().splitlines()[-1]
    cut = _run("--weights", weights, "--data", setup["data"], "--degrade", "tight", "--ced", tmp_path / "c.png",
               "--device", "cpu")
    assert cut.returncode == 0 and "degraded: tight" in cut.stdout, cut.stderr
    assert LAST_LINE.match(cut.stdout.strip().splitlines()[-1]).group(1) == "5"


def test_worst_lists_and_draws_the_faces_with_the_largest_error(setup, tmp_path):
    ced = tmp_path / "ced.png"
    r = _run("--weights", setup["face"], "--data", setup["data"], "--device", "cpu", "--ced", ced, "--worst", "5")
    assert r.returncode == 0, r.stderr
    listed = re.findall(r"^\s+(\d+\.\d\d)\s+(\S+)\s+(\d+)$", r.stdout, re.M)
    nmes = [float(n) for n, _, _ in listed]
    assert len(nmes) == 5 and nmes == sorted(nmes, reverse=True)
    assert all(os.path.isfile(path) for _, path, _ in listed)
    # all 5 faces listed: their mean is the NME printed
    nme = float(re.search(r"^NME=(\d+\.\d\d)", r.stdout.strip().splitlines()[-1]).group(1))
    assert abs(sum(nmes) / 5 - nme) < 0.01
    sheet = tmp_path / "ced_worst.png"
    assert sheet.is_file() and sheet.stat().st_size > 5000 and f"worst faces: {sheet}" in r.stdout

    ced.unlink()  # the sheet of the earlier run is still there: not replaced without --force
    r = _run("--weights", setup["face"], "--data", setup["data"], "--device", "cpu", "--ced", ced, "--worst", "2")
    assert r.returncode == 2 and str(sheet) in r.stderr and not ced.exists()
    r = _run("--weights", setup["face"], "--data", setup["data"], "--device", "cpu", "--worst", "-1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--worst" in r.stderr


def test_int8_reference_needs_an_onnx_model(setup, tmp_path):
    r = _run("--weights", setup["face"], "--data", setup["data"], "--device", "cpu", "--ced", tmp_path / "c.png",
             "--int8-reference")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and ".onnx" in r.stderr
    assert not (tmp_path / "c.png").exists()


COMPARE = REPO / "training" / "tools" / "compare_evals.py"


def _compare(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(COMPARE), *map(str, args)], cwd=str(REPO), capture_output=True,
                          text=True, timeout=120)


def test_per_face_file_and_paired_comparison(setup, tmp_path):
    import csv
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    other = make_random_checkpoint(tmp_path / "other.pt", "face", seed=5)
    for weights, out in ((setup["face"], first), (other, second)):
        r = _run("--weights", weights, "--data", setup["data"], "--device", "cpu", "--ced", tmp_path / "c.png",
                 "--force", "--per-face", out)
        assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(first)))
    assert len(rows) == 5 and all(r["detected"] == "1" for r in rows)
    # the rows' mean is the NME printed (two decimals there, four here)
    nme = float(re.search(r"^NME=(\d+\.\d\d)", r.stdout.strip().splitlines()[-1]).group(1))
    second_rows = list(csv.DictReader(open(second)))
    assert abs(sum(float(x["nme_percent"]) for x in second_rows) / 5 - nme) < 0.006
    r = _compare(first, second)
    assert r.returncode == 0, r.stderr
    diff = float(re.search(r"^DIFF=([-+]\d+\.\d{4})", r.stdout.strip().splitlines()[-1]).group(1))
    expected = sum(float(b["nme_percent"]) - float(a["nme_percent"]) for a, b in zip(rows, second_rows)) / 5
    assert abs(diff - expected) < 1e-3 and "faces: 5 scored by both" in r.stdout
    r = _compare(first, first)  # a model against itself: no change, an interval of zero width
    assert "DIFF=+0.0000 LOW=+0.0000 HIGH=+0.0000 n=5" in r.stdout
    assert "points apart (% of the normaliser, per face): mean 0.0000" in r.stdout
    # the two models' points lie apart by at least their NMEs' difference (triangle inequality), per face
    r = _compare(first, second)
    apart = float(re.search(r"points apart \(% of the normaliser, per face\): mean (\d+\.\d+)", r.stdout).group(1))
    assert apart + 1e-3 >= sum(abs(float(b["nme_percent"]) - float(a["nme_percent"]))
                               for a, b in zip(rows, second_rows)) / 5 > 0
    # a file from before the points were written: the NMEs still compare, no drift line
    old_style = tmp_path / "old.csv"
    with open(old_style, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["photo", "face", "detected", "nme_percent"])
        w.writerows([r["photo"], r["face"], r["detected"], r["nme_percent"]] for r in rows)
    r = _compare(old_style, first)
    assert r.returncode == 0 and "DIFF=+0.0000" in r.stdout and "points apart" not in r.stdout

    # an existing file is not replaced without --force
    r = _run("--weights", setup["face"], "--data", setup["data"], "--device", "cpu", "--ced", tmp_path / "d.png",
             "--per-face", first)
    assert r.returncode == 2 and str(first) in r.stderr and not (tmp_path / "d.png").exists()
    # files of different faces, and a file that is not a per-face file: one line, exit 2
    with open(second, "w") as f:
        f.write("photo,face,detected,nme_percent\nx.jpg,0,1,3.0\n")
    r = _compare(first, second)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "different faces" in r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    r = _compare(first, bad)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "not an evaluate.py" in r.stderr


def test_point_drift_known_case():
    import numpy as np
    from common.metrics import point_drift
    a = np.zeros((2, 3, 2))
    b = a.copy()
    b[0, 0] = (3, 4)            # face 0: one point 5 px away, normaliser 50 -> (10 + 0 + 0) / 3 %
    b[1] += (0, 1)              # face 1: every point 1 px away, normaliser 20 -> 5 %
    d = point_drift(a, b, np.array([50.0, 20.0]))
    assert d["n"] == 2 and abs(d["max"] - 5.0) < 1e-9 and abs(d["point_max"] - 10.0) < 1e-9
    assert abs(d["mean"] - (10 / 3 + 5) / 2) < 1e-9
    with pytest.raises(ValueError):
        point_drift(a, b[:1], np.array([50.0, 20.0]))


def test_paired_difference_interval_holds_the_mean():
    import numpy as np
    from common.metrics import paired_difference
    rng = np.random.default_rng(0)
    a = rng.uniform(2, 6, 200)
    b = a - 0.1 + rng.normal(0, 0.05, 200)
    r = paired_difference(a, b)
    assert r["low"] < r["diff"] < r["high"] < 0 and abs(r["diff"] + 0.1) < 0.02
    assert r["better"] + r["worse"] == 200 and r["n"] == 200
    with pytest.raises(ValueError):
        paired_difference(a, b[:10])
