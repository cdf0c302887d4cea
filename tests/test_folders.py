"""Folders at throughput: batched faces of several images give the same points
as one image at a time; --jsonl writes one line per image or video and --resume after
a kill (whole lines kept, a partial last line dropped) does only the rest;
--shard I/N splits one list exactly; the JSONL file is guarded like every
output. Untrained checkpoints: the plumbing, not the accuracy."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import REPO, interrupting_landmarker, make_random_checkpoint, run_predict  # noqa: E402

sys.path.insert(0, str(REPO / "inference"))
from benchmark import make_photo_folder  # noqa: E402

N = 6


@pytest.fixture(scope="module")
def face_ckpt(tmp_path_factory):
    return make_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "face.pt", "face")


@pytest.fixture()
def photos(tmp_path):
    (tmp_path / "ph").mkdir()
    return make_photo_folder(str(tmp_path / "ph"), N, seed=1)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def errors(proc) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [x for x in proc.stderr.splitlines() if x.startswith("error: ")]


def test_batched_folder_gives_the_points_of_one_by_one(photos, face_ckpt):
    from common.predictor import FaceLandmarker
    fl = FaceLandmarker(str(face_ckpt), device="cpu")
    one = [fl.detect_landmarks(p) for p in photos]
    for workers, batch in ((2, 16), (0, 3)):
        got = list(fl.iter_landmarks(photos + ["missing.jpg"], workers, batch))
        assert [g[0] for g in got] == list(range(N + 1))  # in input order
        assert isinstance(got[-1][3], Exception) and "no such file" in str(got[-1][3])  # a failure is handed back, the rest go on
        assert sum(len(f) for f in one) >= N  # the detector finds the portrait's face
        for faces, (_, _, _, batched) in zip(one, got):
            assert len(faces) == len(batched)
            for a, b in zip(faces, batched):
                np.testing.assert_allclose(a.points, b.points, atol=1e-3)
                np.testing.assert_allclose(a.box, b.box, atol=1e-4)


def test_jsonl_and_resume_after_a_kill(tmp_path, photos, face_ckpt):
    proc = run_predict("ph", "--no-save", "--jsonl", "run.jsonl", "--json", "run.json", "--weights", face_ckpt,
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    full = lines(tmp_path / "run.jsonl")
    assert [r["path"] for r in full] == [f"ph/photo_{k:03d}.jpg" for k in range(N)]
    assert full == json.loads((tmp_path / "run.json").read_text())["images"]  # the same per-image objects
    text = (tmp_path / "run.jsonl").read_text()
    # A kill: two whole lines, then half of the third.
    cut = text.splitlines(keepends=True)
    for keep, partial in ((2, cut[2][: len(cut[2]) // 2]), (4, "")):
        (tmp_path / "run.jsonl").write_text("".join(cut[:keep]) + partial)
        proc = run_predict("ph", "--no-save", "--jsonl", "run.jsonl", "--resume", "--weights", face_ckpt,
                           cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert f"{keep} of {N} inputs already done" in proc.stderr
        assert ("partial last line" in proc.stderr) == bool(partial)
        done = [x for x in proc.stdout.splitlines() if x.startswith("ph/")]
        assert len(done) == N - keep  # only the rest was processed
        again = lines(tmp_path / "run.jsonl")
        assert [r["path"] for r in again] == [r["path"] for r in full]  # each once, none lost
        assert again == full
    # Everything done: nothing to do, exit 0, file unchanged.
    proc = run_predict("ph", "--no-save", "--jsonl", "run.jsonl", "--resume", "--weights", face_ckpt, cwd=tmp_path)
    assert proc.returncode == 0 and "nothing left to do" in proc.stderr
    assert lines(tmp_path / "run.jsonl") == full


def test_jsonl_keeps_a_video_of_the_folder_and_resume_skips_it(tmp_path, photos, face_ckpt):
    from test_predict_outputs import write_video
    write_video(tmp_path / "ph" / "clip.mp4", frames=4)
    proc = run_predict("ph", "--no-save", "--jsonl", "run.jsonl", "--json", "run.json", "--weights", face_ckpt,
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    full = lines(tmp_path / "run.jsonl")
    video = [r for r in full if r["path"] == "ph/clip.mp4"]
    assert len(full) == N + 1 and len(video) == 1 and len(video[0]["frames"]) == 4
    assert video == json.loads((tmp_path / "run.json").read_text())["videos"]  # the JSON's video object
    proc = run_predict("ph", "--no-save", "--jsonl", "run.jsonl", "--resume", "--weights", face_ckpt, cwd=tmp_path)
    assert proc.returncode == 0 and "nothing left to do" in proc.stderr, proc.stderr
    assert lines(tmp_path / "run.jsonl") == full


def test_jsonl_is_guarded_like_every_output(tmp_path, photos, face_ckpt):
    (tmp_path / "old.jsonl").write_text("keep me\n")
    proc = run_predict("ph", "--no-save", "--jsonl", "old.jsonl", "--weights", face_ckpt, cwd=tmp_path)
    (err,) = errors(proc)
    assert proc.returncode == 2 and "--resume" in err and "--force" in err
    # Not a file of ours: --resume refuses it too, and leaves it alone.
    proc = run_predict("ph", "--no-save", "--jsonl", "old.jsonl", "--resume", "--weights", face_ckpt, cwd=tmp_path)
    assert proc.returncode == 2 and "line 1" in errors(proc)[0]
    assert (tmp_path / "old.jsonl").read_text() == "keep me\n"
    for target, extra in (("ph/photo_000.jpg", ["--force"]), ("same.json", ["--json", "same.json"])):
        before = (tmp_path / target).read_bytes() if (tmp_path / target).exists() else None
        proc = run_predict("ph", "--no-save", "--jsonl", target, *extra, "--weights", face_ckpt, cwd=tmp_path)
        assert proc.returncode == 2 and len(errors(proc)) == 1, proc.stderr
        if before is not None:
            assert (tmp_path / target).read_bytes() == before
    # --force replaces it.
    proc = run_predict("ph", "--no-save", "--jsonl", "old.jsonl", "--force", "--weights", face_ckpt, cwd=tmp_path)
    assert proc.returncode == 0 and len(lines(tmp_path / "old.jsonl")) == N
    proc = run_predict("ph", "--no-save", "--json", "x.json", "--resume", "--weights", face_ckpt, cwd=tmp_path)
    assert proc.returncode == 2 and "--jsonl" in errors(proc)[0]


def test_shards_cover_the_list_exactly_once(tmp_path, photos, face_ckpt):
    got = []
    for i in range(2):
        proc = run_predict("ph", "--no-save", "--shard", f"{i}/2", "--jsonl", "part{shard}.jsonl",
                           "--weights", face_ckpt, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        got.append([r["path"] for r in lines(tmp_path / f"part{i}.jsonl")])
    everything = [f"ph/photo_{k:03d}.jpg" for k in range(N)]
    assert got == [everything[0::2], everything[1::2]]  # every 2nd of the sorted list
    proc = run_predict("ph", "--no-save", "--shard", "2/2", "--jsonl", "x.jsonl", "--weights", face_ckpt,
                       cwd=tmp_path)
    assert proc.returncode == 2 and "--shard" in errors(proc)[0]


def test_torchrun_environment_shards_and_wants_one_file_each(tmp_path, photos, face_ckpt, monkeypatch):
    from common import predict_cli as I
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    p = I.get_args_parser()
    assert I.main(p.parse_args(["ph", "--no-save", "--jsonl", "all.jsonl", "--weights", str(face_ckpt)])) == 2
    assert I.main(p.parse_args(["ph", "--no-save", "--jsonl", "r{shard}.jsonl", "--weights", str(face_ckpt)])) == 0
    assert [r["path"] for r in lines(tmp_path / "r1.jsonl")] == ["ph/photo_001.jpg", "ph/photo_004.jpg"]


def test_ctrl_c_keeps_the_lines_written_and_says_resume(tmp_path, photos, face_ckpt, monkeypatch, capsys):
    from common import predict_cli as I
    from common import predictor

    Interrupting = interrupting_landmarker(3)

    monkeypatch.setattr(predictor, "FaceLandmarker", Interrupting)
    monkeypatch.chdir(tmp_path)
    args = I.get_args_parser().parse_args(["ph", "--no-save", "--jsonl", "run.jsonl", "--weights", str(face_ckpt)])
    assert I.main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted during ph/photo_002.jpg (2 of 6 inputs done)" in err and "--resume" in err
    assert [r["path"] for r in lines(tmp_path / "run.jsonl")] == ["ph/photo_000.jpg", "ph/photo_001.jpg"]
