"""predict.py under faults: every output (image, video, chips, JSON, JSONL)
is claimed against every input of the command and against a second run,
written under a temporary name and renamed into place (links replaced, never
written through), and a write error names the output and stops the run with
what was done kept. Untrained checkpoints: the plumbing, not the accuracy."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import PREDICT, REPO, interrupting_landmarker, run_predict  # noqa: E402
from test_predict_outputs import count_frames, write_video  # noqa: E402

sys.path.insert(0, str(REPO / "inference"))
from benchmark import make_photo_folder  # noqa: E402


def errors(proc) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [x for x in proc.stderr.splitlines() if x.startswith("error: ")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def hidden(folder: Path) -> list[str]:
    """Leftovers of ours: temporary files and locks."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture()
def photos(tmp_path):
    (tmp_path / "ph").mkdir()
    return make_photo_folder(str(tmp_path / "ph"), 4, seed=3)


@pytest.fixture()
def small_disk(tmp_path):
    """A 1 MB tmpfs at tmp_path/full; skips where mounting is not allowed."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a full disk needs a small tmpfs, and mounting one needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not allowed here: {proc.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# -- 1. the input guard covers every input of the command, whatever --shard selects --

def test_a_shard_never_writes_over_another_shards_input(tmp_path, photos, ckpts):
    before = {p: digest(Path(p)) for p in photos}
    target = photos[1]  # in shard 1 of 2
    proc = run_predict("ph", "--no-save", "--shard", "0/2", "--json", target, "--force",
                       "--weights", ckpts["face"], cwd=tmp_path)
    (err,) = errors(proc)
    assert proc.returncode == 2 and "would overwrite the input" in err
    # An input that is another input's annotated output, named explicitly, in the other shard.
    (tmp_path / "s2").mkdir()
    shutil.copy(photos[0], tmp_path / "s2" / "a.jpg")
    shutil.copy(photos[2], tmp_path / "s2" / "a_landmarks.jpg")
    keep = digest(tmp_path / "s2" / "a_landmarks.jpg")
    proc = run_predict("s2/a.jpg", "s2/a_landmarks.jpg", "--shard", "0/2", "--force",
                       "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 2 and "would overwrite the input" in errors(proc)[0]
    assert digest(tmp_path / "s2" / "a_landmarks.jpg") == keep
    assert {p: digest(Path(p)) for p in photos} == before


# -- 2. links are replaced, never written through -------------------------------

def test_video_and_jsonl_replace_links_and_never_write_through_them(tmp_path, photos, ckpts):
    write_video(tmp_path / "clip.mp4", frames=4)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "v.mp4").write_bytes(b"not yours")
    (elsewhere / "r.jsonl").write_bytes(b"not yours either")
    (tmp_path / "o").mkdir()
    os.symlink(elsewhere / "v.mp4", tmp_path / "o" / "clip_landmarks.mp4")
    os.symlink(elsewhere / "r.jsonl", tmp_path / "r.jsonl")
    proc = run_predict(photos[0], "clip.mp4", "--output", "o", "--jsonl", "r.jsonl", "--force",
                       "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (elsewhere / "v.mp4").read_bytes() == b"not yours"
    assert (elsewhere / "r.jsonl").read_bytes() == b"not yours either"
    assert not (tmp_path / "o" / "clip_landmarks.mp4").is_symlink() and not (tmp_path / "r.jsonl").is_symlink()
    assert count_frames(tmp_path / "o" / "clip_landmarks.mp4") == 4 and len(lines(tmp_path / "r.jsonl")) == 2
    # Dangling links count as existing files: refused without --force, nothing created outside.
    os.remove(tmp_path / "o" / "clip_landmarks.mp4")
    os.symlink(elsewhere / "gone.mp4", tmp_path / "o" / "clip_landmarks.mp4")
    proc = run_predict("clip.mp4", "--output", "o", "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 2 and "already exists" in errors(proc)[0]
    assert not (elsewhere / "gone.mp4").exists()
    # A hard link is replaced by a new file: the other name keeps its bytes.
    os.link(elsewhere / "v.mp4", tmp_path / "o" / "hard_landmarks.mp4")
    shutil.copy(tmp_path / "clip.mp4", tmp_path / "hard.mp4")
    proc = run_predict("hard.mp4", "--output", "o", "--force", "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (elsewhere / "v.mp4").read_bytes() == b"not yours"
    # --resume appends, so it refuses a linked JSONL file.
    os.symlink(elsewhere / "r.jsonl", tmp_path / "r2.jsonl")
    proc = run_predict("ph", "--no-save", "--jsonl", "r2.jsonl", "--resume", "--weights", ckpts["face"],
                       cwd=tmp_path)
    assert proc.returncode == 2 and "link" in errors(proc)[0]
    assert (elsewhere / "r.jsonl").read_bytes() == b"not yours either"
    assert hidden(tmp_path / "o") == [] and hidden(tmp_path) == []


# -- 3, 4. write errors: one line naming the output, the run stops, the rest is kept --

def test_full_disk_stops_the_run_names_the_output_and_keeps_the_json(tmp_path, small_disk, ckpts):
    (tmp_path / "F").mkdir()
    make_photo_folder(str(tmp_path / "F"), 12, seed=4)
    (small_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 12 * 1024))  # leaves a few kB
    proc = run_predict("F", "--no-save", "--jsonl", small_disk / "r.jsonl", "--json", "run.json",
                       "--weights", ckpts["face"], cwd=tmp_path)
    errs = errors(proc)
    assert proc.returncode == 1 and len(errs) == 1, proc.stderr
    assert errs[0].startswith(f"error: {small_disk / 'r.jsonl'}: cannot write (No space left on device)")
    doc = json.loads((tmp_path / "run.json").read_text())  # on a healthy disk: written
    done = [im["path"] for im in doc["images"]]
    assert 0 < len(done) < 12 and doc["errors"][-1]["path"] == str(small_disk / "r.jsonl")
    # Space again: --resume finishes the rest, each input once.
    os.remove(small_disk / "filler")
    proc = run_predict("F", "--no-save", "--jsonl", small_disk / "r.jsonl", "--resume",
                       "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    paths = [r["path"] for r in lines(small_disk / "r.jsonl")]
    assert sorted(paths) == sorted(f"F/{p}" for p in os.listdir(tmp_path / "F")) and len(set(paths)) == 12
    assert hidden(small_disk) == []


def test_a_video_that_fills_the_disk_is_never_reported_as_written(tmp_path, small_disk, ckpts):
    write_video(tmp_path / "clip.mp4", frames=40, scale=1.0)
    (small_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))  # the video needs more
    proc = run_predict("clip.mp4", "--output", small_disk, "--json", "run.json", "--weights", ckpts["face"],
                       cwd=tmp_path)
    errs = errors(proc)
    assert proc.returncode == 1 and len(errs) == 1, proc.stderr
    assert errs[0].startswith(f"error: {small_disk / 'clip_landmarks.mp4'}: cannot write (")
    assert sorted(os.listdir(small_disk)) == ["filler"]
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["videos"] == [] and doc["errors"][0]["path"] == str(small_disk / "clip_landmarks.mp4")


# -- 5, 6. kills, Ctrl-C and --resume -------------------------------------------

def test_a_killed_video_leaves_no_partial_file_and_resume_redoes_it(tmp_path, ckpts):
    write_video(tmp_path / "clip.mp4", frames=300)
    cmd = [sys.executable, str(PREDICT), "clip.mp4", "--jsonl", "run.jsonl", "--weights", str(ckpts["face"])]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not any(".tmp" in n for n in hidden(tmp_path)):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(".tmp" in n for n in hidden(tmp_path)), "the video was never begun"
    assert not (tmp_path / "clip_landmarks.mp4").exists()  # nothing under the final name
    done = run_predict("clip.mp4", "--jsonl", "run.jsonl", "--resume", "--max-frames", "12",
                       "--weights", ckpts["face"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert count_frames(tmp_path / "clip_landmarks.mp4") == 12 and len(lines(tmp_path / "run.jsonl")) == 1
    assert hidden(tmp_path) == []  # the killed run's temporary file and lock are gone


def test_resume_after_ctrl_c_with_json_rebuilds_the_json(tmp_path, photos, ckpts, monkeypatch, capsys):
    from common import predict_cli as I
    from common import predictor

    Interrupting = interrupting_landmarker(3)

    monkeypatch.chdir(tmp_path)
    argv = ["ph", "--no-save", "--jsonl", "k7.jsonl", "--json", "k7.json", "--weights", str(ckpts["face"])]
    monkeypatch.setattr(predictor, "FaceLandmarker", Interrupting)
    assert I.main(I.get_args_parser().parse_args(argv)) == 130
    assert "run the same command with --resume" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert I.main(I.get_args_parser().parse_args(argv + ["--resume"])) == 0
    doc = json.loads((tmp_path / "k7.json").read_text())
    assert [im["path"] for im in doc["images"]] == [f"ph/{os.path.basename(p)}" for p in photos]
    assert doc["images"] == lines(tmp_path / "k7.jsonl")
    # Run again when all is done: the JSON is rebuilt from the JSONL file alone.
    os.remove(tmp_path / "k7.json")
    assert I.main(I.get_args_parser().parse_args(argv + ["--resume"])) == 0
    assert json.loads((tmp_path / "k7.json").read_text())["images"] == doc["images"]


def test_resume_compares_inputs_by_resolved_path(tmp_path, photos, ckpts):
    proc = run_predict("ph/", "--no-save", "--jsonl", "r.jsonl", "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_predict("./ph", "--no-save", "--jsonl", "r.jsonl", "--resume", "--weights", ckpts["face"],
                       cwd=tmp_path)
    assert proc.returncode == 0 and "nothing left to do" in proc.stderr, proc.stderr
    assert len(lines(tmp_path / "r.jsonl")) == 4


# -- 7. a second run at once ------------------------------------------------------

def test_a_second_run_on_the_same_outputs_is_refused_in_one_line(tmp_path, photos, ckpts):
    import socket
    first = subprocess.Popen(["sleep", "60"])  # stands for a live run holding the outputs
    try:
        (tmp_path / ".r.jsonl.lock").write_text(f"{first.pid} {socket.gethostname()}\n")
        (tmp_path / "r.jsonl").write_text('{"path": "ph/x.jpg"}\n')
        for extra in (["--resume"], ["--force"]):
            proc = run_predict("ph", "--no-save", "--jsonl", "r.jsonl", *extra, "--weights", ckpts["face"],
                               cwd=tmp_path)
            (err,) = errors(proc)
            assert proc.returncode == 2 and f"another run (pid {first.pid}" in err
            assert (tmp_path / "r.jsonl").read_text() == '{"path": "ph/x.jpg"}\n'
        (tmp_path / "o").mkdir()
        (tmp_path / "o" / f".{os.path.basename(photos[2])[:-4]}_landmarks.jpg.lock").write_text(
            f"{first.pid} {socket.gethostname()}\n")
        proc = run_predict("ph", "--output", "o", "--json", "o/run.json", "--weights", ckpts["face"], cwd=tmp_path)
        assert proc.returncode == 2 and len(errors(proc)) == 1 and "another run" in errors(proc)[0]
        assert sorted(os.listdir(tmp_path / "o")) == [f".{os.path.basename(photos[2])[:-4]}_landmarks.jpg.lock"]
    finally:
        first.kill()
        first.wait()
    # The holder is gone (killed): its lock is stale and taken over.
    proc = run_predict("ph", "--output", "o", "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert hidden(tmp_path / "o") == [] and len(os.listdir(tmp_path / "o")) == 4


def test_two_runs_at_once_on_one_jsonl_one_wins_whole(tmp_path, photos, ckpts):
    cmd = [sys.executable, str(PREDICT), "ph", "--no-save", "--jsonl", "r.jsonl", "--force",
           "--weights", str(ckpts["face"])]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    codes = [p.wait() for p in procs]
    msgs = [p.stderr.read() for p in procs]
    # Both claim within a moment of starting, long before either has loaded its model and finished.
    assert sorted(codes) == [0, 2], msgs
    loser = msgs[codes.index(2)]
    assert len([x for x in loser.splitlines() if x.startswith("error: ")]) == 1 and "another run" in loser
    assert [r["path"] for r in lines(tmp_path / "r.jsonl")] == [f"ph/{os.path.basename(p)}" for p in photos]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _claim_in_child(args) -> bool:
    path, barrier = args
    from common.outputs import OutputBusyError, OutputGuard
    barrier.wait()
    try:
        OutputGuard([], force=True).claim(path, "JSON output")
        return True
    except OutputBusyError:
        return False


def test_a_stale_lock_is_taken_over_by_one_run_only(tmp_path):
    """Runs that find the same lock of a killed run at once: one takes it over, the others are told
    another run writes it, and none removes the lock another has just taken (the takeover runs
    under a breaker, and only while the lock is still the stale file)."""
    import multiprocessing as mp
    import socket
    from common.outputs import BREAKER_STALE_S, OutputBusyError, OutputGuard, _lock_identity
    out = tmp_path / "r.json"
    lock = tmp_path / ".r.json.lock"
    stale = f"{_dead_pid()} {socket.gethostname()}\n"
    for _ in range(3):
        lock.write_text(stale)
        ctx = mp.get_context("fork")
        barrier = ctx.Manager().Barrier(6)
        with ctx.Pool(6) as pool:
            won = pool.map(_claim_in_child, [(str(out), barrier)] * 6)
        assert sum(won) == 1, won
        assert sorted(p.name for p in tmp_path.iterdir()) == [".r.json.lock"]   # the winner's (it has ended)
    # A run that read the stale lock, then finds another run's new lock in its place, leaves it alone.
    lock.write_text(stale)
    seen = _lock_identity(str(lock))
    winner = OutputGuard([], force=True)
    winner.claim(str(out), "JSON output")
    mine = lock.read_text()
    assert mine == f"{os.getpid()} {socket.gethostname()}\n"
    late = OutputGuard([], force=True)
    assert late._take_stale(str(lock), str(out), seen) is False and lock.read_text() == mine
    winner.release()
    # The new lock may get the stale file's inode number back (here: written in place): its contents tell.
    lock.write_text(stale)
    seen = _lock_identity(str(lock))
    lock.write_text(mine)
    assert late._take_stale(str(lock), str(out), seen) is False and lock.read_text() == mine
    # A breaker left by a run killed while taking over: young, it stops a takeover; old, it goes.
    lock.write_text(stale)
    breaker = tmp_path / ".r.json.lock.break"
    breaker.write_text("")
    with pytest.raises(OutputBusyError, match="another run"):
        OutputGuard([], force=True).claim(str(out), "JSON output")
    old = time.time() - BREAKER_STALE_S - 5
    os.utime(breaker, (old, old))
    guard = OutputGuard([], force=True)
    guard.claim(str(out), "JSON output")
    assert not breaker.exists() and lock.read_text() == mine
    guard.release()
    assert hidden(tmp_path) == []


# -- 9. chips ------------------------------------------------------------------------

def test_chips_are_never_inputs_and_stale_chips_go(tmp_path, photo):
    from inference_helpers import FACE_WEIGHTS
    if not FACE_WEIGHTS.is_file():
        pytest.skip("shipped weights not present")
    (tmp_path / "in").mkdir()
    shutil.copy(photo, tmp_path / "in" / "x.jpg")
    proc = run_predict("in", "--no-save", "--chips", "in", "--weights", FACE_WEIGHTS, cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "in" / "x_face0_chip.png").is_file(), proc.stderr
    proc = run_predict("in", "--no-save", "--chips", "in", "--force", "--json", "-", "--weights", FACE_WEIGHTS,
                       cwd=tmp_path)
    assert [im["path"] for im in json.loads(proc.stdout)["images"]] == ["in/x.jpg"]  # not the chip
    # A --force rerun that finds fewer faces removes the chips of faces no longer there.
    (tmp_path / "in" / "x_face3_chip.png").write_bytes(b"old")
    proc = run_predict("in/x.jpg", "--no-save", "--chips", "in", "--force", "--weights", FACE_WEIGHTS, cwd=tmp_path)
    assert proc.returncode == 0 and not (tmp_path / "in" / "x_face3_chip.png").exists()


def test_chip_name_clash_is_found_before_the_work_and_chip_size_is_bounded(tmp_path, photo, ckpts):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        shutil.copy(photo, tmp_path / d / "x.jpg")
    proc = run_predict("d1/x.jpg", "d2/x.jpg", "--no-save", "--chips", "c", "--json", "-",
                       "--weights", ckpts["face"], cwd=tmp_path)
    (err,) = errors(proc)
    assert "d2/x.jpg" in err and "different --chips folders" in err
    assert "loaded" in proc.stderr and [im["path"] for im in json.loads(proc.stdout)["images"]] == ["d1/x.jpg"]
    for size in ("100000", "8"):
        proc = run_predict("d1/x.jpg", "--chips", "c", "--chip-size", size, "--weights", ckpts["face"], cwd=tmp_path)
        (err,) = errors(proc)
        assert proc.returncode == 2 and "--chip-size must be between" in err and "loaded" not in proc.stderr


# -- 11. devices ----------------------------------------------------------------------

def test_dev_null_is_a_valid_json_and_jsonl(tmp_path, photo, ckpts):
    proc = run_predict("pic.jpg", "--no-save", "--json", os.devnull, "--jsonl", os.devnull,
                       "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["pic.jpg"] and os.path.exists(os.devnull)


def test_plots_and_training_logs_are_written_whole_or_not_at_all(tmp_path, small_disk):
    """Every plot (common/plots.py) and log.csv go through write_atomically: on a full disk the old file
    stays as it was and no temporary file is left; elsewhere the format follows the extension."""
    from common.errors import OutputError
    from common.metrics import ced_plot
    from common.plots import new_figure, save_figure
    from common.runlog import plot_curves, write_log
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.5 / e, "val_nme": 9.0 / e, "lr": 1e-3,
                "epoch_s": 1.0, "img_per_s": 1.0, "input_px": 64 if e < 3 else 128} for e in range(1, 6)]
    plot_curves(str(tmp_path / "curves.png"), history, "t")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig, ax = new_figure()
    ax.plot([0, 1])
    save_figure(fig, str(tmp_path / "plot.pdf"))
    assert (tmp_path / "plot.pdf").read_bytes()[:5] == b"%PDF-"
    (small_disk / "ced.png").write_bytes(b"old")
    (small_disk / "log.csv").write_bytes(b"old")
    with open(small_disk / "filler", "wb", buffering=0) as f:  # the disk full to the last byte
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    with pytest.raises(OutputError, match="ced.png"):
        ced_plot({"a": np.random.default_rng(0).random(2000) * 0.1}, str(small_disk / "ced.png"))
    with pytest.raises(OutputError, match="log.csv"):
        write_log(str(small_disk / "log.csv"), history * 2000)
    assert (small_disk / "ced.png").read_bytes() == b"old" and (small_disk / "log.csv").read_bytes() == b"old"
    assert hidden(small_disk) == [] and sorted(p.name for p in small_disk.iterdir()) == ["ced.png", "filler", "log.csv"]
