"""Short training runs on a tiny generated set, resuming, and the training scripts."""
import csv
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from common import checkpoint as C
from common import training
from common.cli import run_script
from common.dataset import LandmarkDataset
from common.distill import Teacher
from common.errors import CheckpointError, InputError
from common.readers import read_datasets
from common.landmarks import EYE_INDICES, FACE_INDICES
from common.model import LandmarkNet, build_model
from common.transforms import AugmentConfig
from conftest import REPO_ROOT


def _args(*extra):
    return training.get_args_parser().parse_args(
        ["--workers", "0", "--threads", "1", "--device", "cpu", "--batch-size", "8", *extra])


def _read_log(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_short_run_lowers_the_loss_and_writes_its_files(tiny_face_set, tmp_path):
    runs = str(tmp_path / "runs")
    args = _args("--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"],
                 "--input-size", "64", "--head", "regression", "--epochs", "5", "--lr", "3e-3",
                 "--runs-dir", runs)
    result = training.main(args)
    run_dir = os.path.join(runs, "face", "1")
    assert result["run_dir"] == run_dir
    assert sorted(os.listdir(run_dir)) == ["best.pt", "curves.png", "last.pt", "log.csv", "time.txt"]
    hist = result["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5]
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"], [h["train_loss"] for h in hist]
    log = _read_log(os.path.join(run_dir, "log.csv"))
    assert [int(r["epoch"]) for r in log] == [1, 2, 3, 4, 5]
    assert float(log[-1]["train_loss"]) == pytest.approx(hist[-1]["train_loss"], rel=1e-4)
    assert os.path.getsize(os.path.join(run_dir, "curves.png")) > 1000
    # best.pt describes itself and loads with weights_only=True.
    best = torch.load(os.path.join(run_dir, "best.pt"), map_location="cpu", weights_only=True)
    assert best["task"] == "face" and best["head"] == "regression" and best["input_size"] == 64
    assert best["epoch"] == result["best"]["epoch"]
    assert best["scores"]["val_nme"] == pytest.approx(result["best"]["val_nme"])
    assert "optimizer" not in best
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in best["model"])
    model, _ = C.load_model(os.path.join(run_dir, "best.pt"), task="face")
    assert model.predict(torch.zeros(1, 1, 64, 64)).shape == (1, 68, 2)
    last = C.load_checkpoint(os.path.join(run_dir, "last.pt"))
    assert last["epoch"] == 5 and len(last["history"]) == 5 and "optimizer" in last


def test_final_fit_trains_on_every_face_and_keeps_the_last_epoch(tiny_face_set, tmp_path, capsys):
    from common.dataset import split_like_run
    runs = str(tmp_path / "runs")
    common_args = ["--data", tiny_face_set["train"], "--input-size", "32", "--epochs", "2", "--runs-dir", runs]
    twin = training.main(_args(*common_args, "--val-fraction", "0.3"))
    final = training.main(_args(*common_args, "--val-fraction", "0"))
    log = capsys.readouterr().err
    assert "done. the last epoch (2) kept: a final fit" in log and "nan" not in log.split("done.")[-1]
    best = C.load_checkpoint(os.path.join(final["run_dir"], "best.pt"))
    assert best["epoch"] == 2 and final["best"]["epoch"] == 2
    assert best["scores"]["val_data"] == ["none: a final fit on every face (--val-fraction 0)"]
    records = read_datasets([tiny_face_set["train"]])
    trained, held = split_like_run(records, best["config"])
    assert len(trained) == 24 and held == []                      # every face, none held out
    twin_config = C.load_checkpoint(os.path.join(twin["run_dir"], "best.pt"))["config"]
    t_trained, t_held = split_like_run(records, twin_config)
    assert len(t_trained) < 24 and len(t_held) > 0               # the twin held some out
    from common.dataset import is_final_fit
    assert is_final_fit(best["config"]) and not is_final_fit(twin_config)
    assert not is_final_fit({}) and not is_final_fit({"val_fraction": 0, "val_data": ["other.xml"]})
    # Scoring it on held-out faces is refused with a one-line reason (it trained on them); its training faces are all.
    from common.dataset import records_of_split
    from common.errors import InputError
    name = os.path.basename(tiny_face_set["train"])
    with pytest.raises(InputError, match="final fit on every face"):
        records_of_split(records, best["config"], name, "heldout", "best.pt")
    assert len(records_of_split(records, best["config"], name, "train", "best.pt")) == 24
    # It resumes like any run.
    again = training.main(_args("--resume", final["run_dir"], "--epochs", "3"))
    assert [h["epoch"] for h in again["history"]] == [1, 2, 3] and again["best"]["epoch"] == 3
    # It may not start or teach a run that holds faces out: it trained on them. Its twin may.
    final_pt, twin_pt = (os.path.join(r["run_dir"], "best.pt") for r in (final, twin))
    for option in ("--init", "--teacher"):
        with pytest.raises(InputError, match=f"{option} .*best.pt trained on [1-9][0-9]* of this run's "
                                             "[1-9][0-9]* held-out faces"):
            training.main(_args(*common_args, "--val-fraction", "0.3", option, final_pt))
    taught = training.main(_args(*common_args, "--epochs", "1", "--val-fraction", "0.3", "--init", twin_pt,
                                 "--teacher", twin_pt))
    assert taught["best"]["epoch"] == 1
    assert training.main(_args(*common_args, "--epochs", "1", "--val-fraction", "0", "--init", final_pt))


def test_amp_on_a_cpu_trains_in_bfloat16_and_keeps_float32_weights(tiny_face_set, tmp_path, monkeypatch,
                                                                   capsys):
    seen = []
    real_forward = training.build_model(68, "pip", 32).__class__.forward

    def spy(self, x):
        out = real_forward(self, x)
        seen.append(out[0].dtype)
        return out

    monkeypatch.setattr(training.build_model(68, "pip", 32).__class__, "forward", spy)
    runs = str(tmp_path / "runs")
    result = training.main(_args("--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"],
                                 "--input-size", "32", "--epochs", "2", "--lr", "2e-3", "--runs-dir", runs,
                                 "--amp"))
    assert "precision: bfloat16 mixed" in capsys.readouterr().err
    assert torch.bfloat16 in seen and torch.float32 in seen    # training steps, then float32 validation
    assert np.isfinite(result["history"][-1]["train_loss"])
    best = torch.load(os.path.join(result["run_dir"], "best.pt"), map_location="cpu", weights_only=True)
    assert best["config"]["amp"] is True
    assert all(v.dtype == torch.float32 for v in best["model"].values() if v.is_floating_point())


def _stop_at_epoch(monkeypatch, stop_epoch):
    """Make ``train_one_epoch`` raise KeyboardInterrupt (Ctrl-C) when epoch ``stop_epoch`` starts."""
    real = training.train_one_epoch

    def fake(model, loader, optimizer, scaler, device, loss_name, epoch, *rest):
        if epoch == stop_epoch:
            raise KeyboardInterrupt
        return real(model, loader, optimizer, scaler, device, loss_name, epoch, *rest)

    monkeypatch.setattr(training, "train_one_epoch", fake)


@pytest.mark.parametrize("extra", [[], ["--ema", "0.7"], ["--progressive-resize", "16:1"], ["--data-fraction", "0.6"]],
                         ids=["plain", "ema", "progressive", "data-fraction"])
def test_resume_continues_exactly_where_the_run_stopped(tiny_face_set, tmp_path, monkeypatch, extra):
    runs = str(tmp_path / "runs")
    common_args = ["--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"],
                   "--input-size", "32", "--epochs", "2", "--lr", "2e-3", "--runs-dir", runs, *extra]
    full = training.main(_args(*common_args))                        # uninterrupted: runs/face/1
    _stop_at_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        training.main(_args(*common_args))                           # stopped: runs/face/2
    monkeypatch.undo()
    stopped = os.path.join(runs, "face", "2")
    assert C.load_checkpoint(os.path.join(stopped, "last.pt"))["epoch"] == 1
    assert len(_read_log(os.path.join(stopped, "log.csv"))) == 1

    resumed = training.main(_args("--resume", stopped))
    assert resumed["run_dir"] == stopped
    assert sorted(os.listdir(os.path.join(runs, "face"))) == ["1", "2"]   # no new folder
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    for a, b in zip(full["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_nme"] == pytest.approx(b["val_nme"], rel=1e-5)
    assert len(_read_log(os.path.join(stopped, "log.csv"))) == 2
    for name, part in (("last.pt", "model"), ("last.pt", "ema"), ("best.pt", "model")):
        wa = C.load_checkpoint(os.path.join(full["run_dir"], name))[part]
        wb = C.load_checkpoint(os.path.join(stopped, name))[part]
        assert wa.keys() == wb.keys() and (bool(wa) or (part == "ema" and "--ema" not in extra))
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=1e-5, msg=f"{name} {part} {k}")
    # A kill during a checkpoint save leaves a temporary file: resuming removes it.
    orphan = os.path.join(stopped, ".tmp-killed.pt")
    with open(orphan, "wb") as f:
        f.write(b"half a checkpoint")
    # Resuming a finished run has nothing left to do and keeps its history.
    again = training.main(_args("--resume", os.path.join(stopped, "last.pt")))
    assert [h["epoch"] for h in again["history"]] == [1, 2]
    assert not os.path.exists(orphan)
    # time.txt: the training time summed over the two sessions (processes) that ran the run.
    times = open(os.path.join(stopped, "time.txt")).read().splitlines()
    assert "epochs 1-2, over 2 session(s)" in times[0] and len(times) == 3, times
    assert "epochs 1-1" in times[1] and "epochs 2-2" in times[2] and "cpu" in times[1].lower()


def test_channels_last_trains_the_same_model_and_saves_the_standard_layout(tiny_face_set, tmp_path, monkeypatch,
                                                                          capsys):
    common_args = ["--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"], "--input-size", "32",
                   "--epochs", "2", "--lr", "2e-3", "--ema", "0.7"]
    plain = training.main(_args(*common_args, "--runs-dir", str(tmp_path / "plain")))
    _stop_at_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        training.main(_args(*common_args, "--runs-dir", str(tmp_path / "cl"), "--channels-last"))
    monkeypatch.undo()
    assert "precision: float32, channels-last" in capsys.readouterr().err
    stopped = str(tmp_path / "cl" / "face" / "1")
    for part in ("model", "ema"):  # saved in the standard layout
        assert all(t.is_contiguous() for t in C.load_checkpoint(os.path.join(stopped, "last.pt"))[part].values())
    resumed = training.main(_args("--resume", stopped))  # the layout is the resuming command's (here: standard)
    assert "channels-last" not in capsys.readouterr().err
    # The same computation in another order: the first epoch agrees to rounding (later ones drift apart:
    # this untrained network's tiny gradients amplify it).
    assert plain["history"][0]["train_loss"] == pytest.approx(resumed["history"][0]["train_loss"], rel=1e-3)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2] and np.isfinite(resumed["history"][1]["val_nme"])


def test_resume_takes_precision_from_the_resuming_command(tiny_face_set, tmp_path, monkeypatch, capsys):
    """--amp is a machine setting: a float32 run can go on in mixed precision on a faster machine."""
    common_args = ["--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"], "--input-size", "32",
                   "--epochs", "2", "--runs-dir", str(tmp_path)]
    _stop_at_epoch(monkeypatch, 1)  # after the first epoch
    with pytest.raises(KeyboardInterrupt):
        training.main(_args(*common_args))
    monkeypatch.undo()
    assert "precision: float32" in capsys.readouterr().err
    resumed = training.main(_args("--resume", str(tmp_path / "face" / "1"), "--amp"))
    assert "precision: bfloat16 mixed" in capsys.readouterr().err
    assert [h["epoch"] for h in resumed["history"]] == [1, 2] and np.isfinite(resumed["history"][1]["val_nme"])


def test_resume_keeps_the_runs_precision_over_the_platform_default(tiny_face_set, tmp_path, monkeypatch, capsys):
    """A GPU script turns --amp on by default; a run started there with
    --no-amp and resumed without the flag stays float32, and a fresh run
    without the flag takes the platform's default."""
    parser = training.get_args_parser()
    parser.set_defaults(platform_amp=True)  # as training/*/cuda/train.py does
    base = ["--workers", "0", "--threads", "1", "--device", "cpu", "--batch-size", "8"]
    common_args = base + ["--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"],
                          "--input-size", "32", "--epochs", "2", "--runs-dir", str(tmp_path)]
    _stop_at_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        training.main(parser.parse_args(common_args + ["--no-amp"]))
    monkeypatch.undo()
    assert "precision: float32" in capsys.readouterr().err
    resumed = training.main(parser.parse_args(base + ["--resume", str(tmp_path / "face" / "1")]))
    config = C.load_checkpoint(os.path.join(resumed["run_dir"], "last.pt"))["config"]
    assert "precision: float32" in capsys.readouterr().err and config["amp"] is False
    assert "platform_amp" not in config
    _stop_at_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        training.main(parser.parse_args(common_args))
    assert "precision: bfloat16 mixed" in capsys.readouterr().err


def test_resume_of_a_run_from_before_newer_options(tiny_face_set, tmp_path):
    """A run saved before an option existed resumes with that option's default."""
    runs = str(tmp_path / "runs")
    first = training.main(_args("--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"],
                                "--input-size", "32", "--epochs", "1", "--runs-dir", runs))
    last = os.path.join(first["run_dir"], "last.pt")
    state = C.load_checkpoint(last)
    for key in ("ema", "offset_radius"):
        del state["config"][key]
    C.atomic_save(state, last)
    resumed = training.main(_args("--resume", first["run_dir"], "--epochs", "2"))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert C.load_checkpoint(last)["config"]["ema"] == 0.0


def test_weight_average_follows_the_weights_with_its_decay():
    torch.manual_seed(0)
    model = build_model(68, "pip", 32)
    avg = training.WeightAverage(model, 0.75)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for v in model.state_dict().values():
            v.add_(1) if v.is_floating_point() else v.fill_(7)
    avg.update(model)
    for k, v in avg.model.state_dict().items():
        want = start[k] + 0.25 if v.is_floating_point() else torch.full_like(v, 7)
        torch.testing.assert_close(v, want, msg=k)                 # weights and BN statistics both
    assert not any(p.requires_grad for p in avg.model.parameters())
    with pytest.raises(ValueError, match="--ema"):
        training.WeightAverage(model, 1.0)


def test_ema_run_saves_the_average_as_best(tiny_face_set, tmp_path):
    runs = str(tmp_path / "runs")
    result = training.main(_args("--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"],
                                 "--input-size", "32", "--epochs", "1", "--lr", "2e-3", "--runs-dir", runs,
                                 "--ema", "0.9"))
    last = C.load_checkpoint(os.path.join(result["run_dir"], "last.pt"))
    best = C.load_checkpoint(os.path.join(result["run_dir"], "best.pt"))
    assert best["config"]["ema"] == 0.9 and best["epoch"] == 1
    for k, v in best["model"].items():                            # best.pt holds the average ...
        torch.testing.assert_close(v, last["ema"][k], msg=k)
    w = "score.weight"                                            # ... which lags the raw weights
    assert not torch.allclose(last["ema"][w], last["model"][w])
    # last.pt stands for the same weights wherever a model is built from it: evaluation,
    # --init and release (the recipe keeps the last epoch, choosing nothing on validation faces)
    for k, v in C.model_from_checkpoint(last).state_dict().items():
        torch.testing.assert_close(v, best["model"][k], msg=k)
    for k, v in C.release_copy(last, half=False)["model"].items():
        torch.testing.assert_close(v, best["model"][k], msg=k)
    fresh = build_model(68, "pip", 32)
    training.init_from_checkpoint(fresh, os.path.join(result["run_dir"], "last.pt"), list(range(68)))
    torch.testing.assert_close(fresh.state_dict()[w], best["model"][w])


def test_eye_model_from_face_weights_with_held_out_split(tiny_face_set, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    face = training.main(_args("--data", tiny_face_set["train"], "--val-fraction", "0.3",  # the same split
                               "--input-size", "32", "--epochs", "1", "--runs-dir", runs))
    eyes = training.main(_args("--task", "eyes", "--data", tiny_face_set["train"], "--val-fraction", "0.3",
                               "--input-size", "32", "--epochs", "1", "--runs-dir", runs,
                               "--init", os.path.join(face["run_dir"], "best.pt")))
    assert eyes["run_dir"] == os.path.join(runs, "eyes", "1")
    err = capsys.readouterr().err
    n = int(re.search(r"initialised (\d+) tensors", err).group(1))
    assert n == len(C.load_model(os.path.join(face["run_dir"], "best.pt"))[0].state_dict())
    n_train, n_val = map(int, re.findall(r"train faces: (\d+)\s+validation faces: (\d+)", err)[-1])
    assert n_train + n_val == 24 and n_val > 0
    model, ck = C.load_model(os.path.join(eyes["run_dir"], "best.pt"), task="eyes")
    assert ck["landmark_indices"] == list(EYE_INDICES)
    assert model.predict(torch.zeros(2, 1, 32, 32)).shape == (2, 12, 2)


@pytest.mark.parametrize("head", ["pip", "regression"])
def test_init_slices_face_head_to_eye_points(tmp_path, head):
    torch.manual_seed(0)
    face = build_model(68, head, 32)
    eyes = build_model(12, head, 32)
    p = str(tmp_path / "face.pt")
    C.atomic_save({**C.describe(face, "face", FACE_INDICES, 0.5, 0.25), "model": face.state_dict()}, p)
    n = training.init_from_checkpoint(eyes, p, EYE_INDICES)
    assert n == len(eyes.state_dict())
    face.eval(), eyes.eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(eyes.predict(x), face.predict(x)[:, 36:48])
    if head == "regression":
        return
    torch.testing.assert_close(eyes.score.weight, face.score.weight[36:48])
    torch.testing.assert_close(eyes.offset.weight[:12], face.offset.weight[36:48])        # x maps
    torch.testing.assert_close(eyes.offset.weight[12:], face.offset.weight[68 + 36:68 + 48])  # y maps


def test_dataset_cache_keeps_the_geometry(tiny_face_set):
    from common.readers import read_dataset
    recs = read_dataset(tiny_face_set["val"])
    kw = dict(task="face", input_size=32, indices=FACE_INDICES, aug=AugmentConfig(), mean=0.5, std=0.25)
    cached = LandmarkDataset(recs, train=False, cache=True, **kw)
    direct = LandmarkDataset(recs, train=False, cache=False, **kw)
    for i in range(len(recs)):
        (xc, pc, sc), (xd, pd, sd) = cached[i], direct[i]
        assert sc == sd == 0   # one data set: style 0
        assert xc.shape == xd.shape == (1, 32, 32)
        torch.testing.assert_close(pc, pd, atol=0.3, rtol=0)
        corr = np.corrcoef(xc.numpy().ravel(), xd.numpy().ravel())[0, 1]
        assert corr > 0.9
    # Training samples depend only on (seed, epoch, index).
    train = LandmarkDataset(recs, train=True, cache=True, seed=3, **kw)
    train.set_epoch(2)
    a = train[1]
    train.set_epoch(0)
    b = train[1]
    train.set_epoch(2)
    c = train[1]
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
    assert not torch.equal(a[1], b[1])


def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    parser = training.get_args_parser()
    monkeypatch.setattr(sys, "argv", ["train.py", "--data", str(tmp_path / "missing.xml"),
                                      "--device", "cpu", "--runs-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        run_script(training.main, parser)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(tmp_path / "missing.xml") in err[0]
    if not torch.cuda.is_available():
        monkeypatch.setattr(sys, "argv", ["train.py", "--data", "x.xml", "--device", "cuda"])
        with pytest.raises(SystemExit) as e:
            run_script(training.main, parser)
        assert e.value.code == 2
        assert "no GPU is visible" in capsys.readouterr().err


TRAIN_SCRIPTS = sorted(glob.glob(os.path.join(REPO_ROOT, "training", "*", "*", "train.py")))


def test_all_six_training_scripts_exist():
    want = [os.path.join(REPO_ROOT, "training", t, p, "train.py")
            for t in ("eyes", "face") for p in ("cpu", "cuda", "rocm")]
    assert [w for w in want if not os.path.isfile(w)] == []


# Runs a training script with run_script replaced: prints what the script
# would run and its defaults, then answers --help.
_SHOW = """import json, runpy, sys
sys.path.insert(0, {repo!r})
import common.cli
def show(main, parser):
    d = vars(parser.parse_args([]))
    print(json.dumps({{"main": main.__module__ + "." + main.__name__, "task": d["task"], "device": d["device"]}}))
    parser.parse_args(["--help"])
common.cli.run_script = show
runpy.run_path(sys.argv[1], run_name="__main__")
"""


@pytest.fixture(scope="module")
def script_outputs(tmp_path_factory):
    """Every script's defaults and ``--help``, started together (each imports
    torch: seconds), from a folder outside the repository: the scripts must
    not depend on the cwd."""
    cwd = str(tmp_path_factory.mktemp("elsewhere"))
    code = _SHOW.format(repo=REPO_ROOT)
    procs = {s: subprocess.Popen([sys.executable, "-c", code, s], cwd=cwd, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for s in TRAIN_SCRIPTS}
    done = {}
    for s, p in procs.items():
        out, err = p.communicate(timeout=300)
        done[s] = (p.returncode, out, err)
    return done


@pytest.mark.parametrize("script", TRAIN_SCRIPTS, ids=lambda p: "/".join(p.split(os.sep)[-3:-1]))
def test_training_script_runs_the_shared_main_with_its_defaults(script, script_outputs):
    task, platform = script.split(os.sep)[-3:-1]
    rc, out, err = script_outputs[script]
    assert rc == 0, err   # --help answered
    got = json.loads(out.splitlines()[0])
    assert got == {"main": "common.training.main", "task": task, "device": "cpu" if platform == "cpu" else "cuda"}


def test_amp_warns_where_the_cpu_would_emulate_bfloat16(tiny_face_set, tmp_path, monkeypatch, capsys):
    from common.device import native_bf16
    assert native_bf16({"avx2", "avx512_bf16"}) and native_bf16({"amx_bf16"}) and not native_bf16({"avx2"})
    monkeypatch.setattr(training, "native_bf16", lambda: False)
    training.main(_args("--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"], "--input-size", "32",
                        "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), "--amp"))
    assert "emulates bfloat16" in capsys.readouterr().err


def test_dataset_hands_each_face_its_offset_in_cached_pixels(tiny_face_set):
    # The offset is given in photo pixels; the cache may downscale a face, and
    # the mirror step must get it in the pixels of the image it flips.
    from common.readers import dataset_name, read_datasets
    path = tiny_face_set["val"]
    recs = read_datasets([path])
    kw = dict(task="face", input_size=16, indices=FACE_INDICES, aug=AugmentConfig(), mean=0.5, std=0.25,
              train=True)
    scales = []
    for cache in (True, False):
        ds = LandmarkDataset(recs, cache=cache, mirror_offsets={dataset_name(path): 2.0, "other.csv": 5.0}, **kw)
        got = []

        def record(image, points, rng, offset):
            got.append((points, offset))
            return torch.zeros(1), points
        ds.train_tf = record
        for i in range(len(recs)):
            ds[i]
        for r, (points, offset) in zip(recs, got):
            scale = points[:, 0].std() / r.points[:, 0].std()   # image pixels per photo pixel
            assert offset == pytest.approx(2.0 * scale, rel=1e-3)
            scales.append(scale)
        assert LandmarkDataset(recs, cache=cache, **kw).mirror_offsets == [0.0] * len(recs)
    assert min(scales) < 0.9   # the cached faces were downscaled: the scaling was exercised


def test_mirror_offset_takes_one_value_or_one_per_data_set():
    assert training._mirror_offsets(["a/x.xml", "b/y.csv"], None) == {}
    assert training._mirror_offsets(["a/x.xml", "b/y.csv"], [1.0]) == {"x.xml": 1.0, "y.csv": 1.0}
    assert training._mirror_offsets(["a/x.xml", "b/y.csv"], [1.0, 0.5]) == {"x.xml": 1.0, "y.csv": 0.5}
    with pytest.raises(InputError, match="one value or one per --data set"):
        training._mirror_offsets(["a/x.xml", "b/y.csv"], [1.0, 0.5, 2.0])


def test_bad_split_and_resume_arguments_say_what_to_do(tiny_face_set, tmp_path):
    parser = training.get_args_parser()

    def fails(*argv) -> str:
        with pytest.raises(Exception) as e:
            training.main(parser.parse_args(["--device", "cpu", "--runs-dir", str(tmp_path), *argv]))
        return str(e.value)

    assert "at least 0 and below 1" in fails("--data", tiny_face_set["train"], "--val-fraction", "1.5")
    msg = fails("--data", tiny_face_set["train"], "--val-from", "other.xml")
    assert "other.xml" in msg and "train.xml" in msg and "--val-data" not in msg
    (tmp_path / "face" / "1").mkdir(parents=True)  # a run killed before its first epoch ended
    msg = fails("--resume", str(tmp_path / "face" / "1"))
    assert "no epoch" in msg and "without --resume" in msg


def test_help_shows_no_default_for_switches():
    text = training.get_args_parser().format_help()
    assert "(default: True)" not in text and "(default: False)" not in text
    assert "(default: 32)" in text  # other options keep theirs


def _constant_teacher(path, size, where=0.3, task="face"):
    """A regression checkpoint at ``size`` px that puts every point at
    ``where`` x the crop side, whatever the input."""
    idx = FACE_INDICES if task == "face" else EYE_INDICES
    model = build_model(len(idx), "regression", size)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.fill_(where)
    C.atomic_save({**C.describe(model, task, idx, 0.5, 0.25), "config": {}, "scores": {}, "epoch": 0,
                   "model": C.clean_state_dict(model.state_dict())}, str(path))
    return str(path)


def test_distillation_targets_blend_the_teachers_points_in_student_pixels(tiny_face_set, tmp_path, monkeypatch):
    """--teacher: each target is --teacher-weight of the teacher's points
    (seen at its own 48 px, mapped to the student's 32 px) plus the rest of
    the annotation's; the teacher is recorded in the run's config."""
    teacher = _constant_teacher(tmp_path / "teacher.pt", 48)
    where = 0.3 * 32 - 0.5                          # the teacher's points in student pixels
    seen, losses = [], []
    real_targets, real_loss = Teacher.targets, training.landmark_loss

    def spy_targets(self, points, x):
        seen.append((points.clone(), self.points(x)))
        return real_targets(self, points, x)

    def spy_loss(model, out, points, *a):
        losses.append(points.clone())
        return real_loss(model, out, points, *a)

    monkeypatch.setattr(Teacher, "targets", spy_targets)
    monkeypatch.setattr(training, "landmark_loss", spy_loss)
    result = training.main(_args("--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"],
                                 "--input-size", "32", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"),
                                 "--teacher", teacher, "--teacher-weight", "0.25"))
    assert len(seen) == 3                            # 24 faces, batch 8: every training step
    for (points, t_points), target in zip(seen, losses):
        torch.testing.assert_close(t_points, torch.full_like(t_points, where), atol=1e-4, rtol=0)
        assert points.shape == (8, 68, 2) and float(points.std()) > 3   # the annotation: a face's points
        torch.testing.assert_close(target, 0.75 * points + 0.25 * t_points)   # what the loss trains towards
    ck = C.load_checkpoint(os.path.join(result["run_dir"], "best.pt"))
    assert ck["config"]["teacher"] == teacher and ck["config"]["teacher_weight"] == 0.25


def test_distillation_refuses_a_teacher_of_other_points_or_a_bad_weight(tiny_face_set, tmp_path):
    teacher = _constant_teacher(tmp_path / "eyes_teacher.pt", 48, task="eyes")
    common = ["--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"], "--input-size", "32",
              "--epochs", "1", "--runs-dir", str(tmp_path / "runs")]
    with pytest.raises(CheckpointError, match="predicts 12 points, not the 68"):
        training.main(_args(*common, "--teacher", teacher))
    with pytest.raises(InputError, match="--teacher-weight must be between 0 and 1"):
        training.main(_args(*common, "--teacher", teacher, "--teacher-weight", "1.5"))
    with pytest.raises(InputError, match="--teacher .*nothere.pt: no such file"):
        training.main(_args(*common, "--teacher", str(tmp_path / "nothere.pt")))
    with pytest.raises(InputError, match="--occlusion is a probability between 0 and 1"):
        training.main(_args(*common, "--occlusion", "2"))
    with pytest.raises(InputError, match="--tight is a probability between 0 and 1"):
        training.main(_args(*common, "--tight", "-0.1"))
    assert not os.path.exists(tmp_path / "runs")      # refused before any run folder


def test_style_head_samples_train_their_own_head_only():
    """A face of style 1 moves its style head and the backbone, never the
    style-0 head that the released model predicts with."""
    model = build_model(68, "pip", 32, styles=2)
    x, pts = torch.randn(2, 1, 32, 32), torch.rand(2, 68, 2) * 31
    training.landmark_loss(model, model(x, torch.tensor([1, 1])), pts, "l1").backward()
    assert float(model.score.weight.grad.abs().sum()) == 0 and float(model.offset.weight.grad.abs().sum()) == 0
    assert float(model.style_heads[0].weight.grad.abs().sum()) > 0
    assert float(model.features[0].weight.grad.abs().sum()) > 0
    model.zero_grad()
    training.landmark_loss(model, model(x, torch.tensor([0, 0])), pts, "l1").backward()
    assert float(model.style_heads[0].weight.grad.abs().sum()) == 0 and float(model.score.weight.grad.abs().sum()) > 0
    torch.testing.assert_close(model(x)[0], model(x, torch.tensor([0, 0]))[0])   # no style: style 0


def test_style_heads_run_starts_from_a_plain_model_and_releases_a_plain_one(tiny_face_set, tmp_path, monkeypatch):
    """--style-heads with two data sets: one extra head, started from the
    --init model's own head; validation and the teacher use each face's
    style; the released copy is an ordinary model of style 0."""
    import shutil
    other = str(tmp_path / "other.xml")   # the same faces under another data set name: style 1
    shutil.copy(tiny_face_set["train"], other)
    with open(other) as f:
        text = f.read()
    with open(other, "w") as f:   # image paths stay those of the original folder
        f.write(text.replace("file='", f"file='{tiny_face_set['folder']}/"))
    plain = training.main(_args("--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"],
                                "--input-size", "32", "--epochs", "1", "--runs-dir", str(tmp_path / "plain")))
    teacher = _constant_teacher(tmp_path / "teacher.pt", 32)
    styles_seen, targets = [], []
    real_loss = training.landmark_loss

    def spy_loss(model, out, points, *a):
        targets.append(points.clone())
        return real_loss(model, out, points, *a)

    real_forward = LandmarkNet.forward

    def spy_forward(self, x, style=None):
        if self.training:
            styles_seen.append(style.clone())
        return real_forward(self, x, style)

    monkeypatch.setattr(training, "landmark_loss", spy_loss)
    monkeypatch.setattr(LandmarkNet, "forward", spy_forward)
    result = training.main(_args("--data", tiny_face_set["train"], other, "--val-data", tiny_face_set["val"],
                                 "--input-size", "32", "--epochs", "1", "--runs-dir", str(tmp_path / "styled"),
                                 "--style-heads", "--init", os.path.join(plain["run_dir"], "last.pt"),
                                 "--teacher", teacher, "--teacher-weight", "1.0"))
    monkeypatch.undo()
    styles = torch.cat(styles_seen)
    assert sorted(styles.tolist()) == [0] * 24 + [1] * 24
    where = 0.3 * 32 - 0.5                          # the teacher's points: only style 0 learns them
    for style, target in zip(styles_seen, targets):
        taught = (target - where).abs().amax(dim=(1, 2)) < 1e-3
        assert taught.tolist() == (style == 0).tolist()
    last = C.load_checkpoint(os.path.join(result["run_dir"], "last.pt"))
    assert last["styles"] == 2 and "style_heads.0.weight" in last["model"]
    init = C.load_checkpoint(os.path.join(plain["run_dir"], "last.pt"))["model"]
    model, _ = C.load_model(os.path.join(result["run_dir"], "last.pt"))
    assert model.styles == 2
    released = C.release_copy(last)
    assert "styles" not in released and not any(k.startswith("style_heads.") for k in released["model"])
    plain_model = C.model_from_checkpoint(released)
    assert plain_model.styles == 1 and init["score.weight"].shape == plain_model.score.weight.shape
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(plain_model(x)[0], model.float()(x)[0], atol=1e-2, rtol=1e-2)   # float16 copy


def test_style_heads_start_as_a_copy_of_the_init_models_head(tmp_path):
    src = build_model(68, "pip", 32)
    path = str(tmp_path / "src.pt")
    C.atomic_save({**C.describe(src, "face", list(range(68)), 0.5, 0.25), "model": src.state_dict()}, path)
    model = build_model(68, "pip", 32, styles=3)
    training.init_from_checkpoint(model, path, list(range(68)))
    for head in model.style_heads:
        torch.testing.assert_close(head.weight, torch.cat([src.score.weight, src.offset.weight]))
        torch.testing.assert_close(head.bias, torch.cat([src.score.bias, src.offset.bias]))


def test_style_heads_need_the_pip_head(tiny_face_set, tmp_path):
    with pytest.raises(InputError, match="pip head"):
        training.main(_args("--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"], "--input-size",
                            "32", "--epochs", "1", "--head", "regression", "--style-heads",
                            "--runs-dir", str(tmp_path)))


def test_progressive_resize_plan_and_its_errors():
    assert training.resize_plan(None, 128, 4) == [128] * 4
    assert training.resize_plan(["64:2", "96:1"], 128, 5) == [64, 64, 96, 128, 128]
    assert training._describe_plan([64, 64, 96, 128]) == " (epochs 1-2 at 64px, 3 at 96px)"
    assert training._describe_plan([128, 128]) == ""
    for bad in (["96"], ["100:2"], ["128:2"], ["0:2"], ["64:0"], ["x:y"]):
        with pytest.raises(InputError, match="--progressive-resize"):
            training.resize_plan(bad, 128, 10)
    with pytest.raises(InputError, match="leave at least the last"):
        training.resize_plan(["64:3", "96:2"], 128, 5)


def test_progressive_resize_trains_early_epochs_on_smaller_batches(tiny_face_set, tmp_path, monkeypatch):
    seen = []
    cls = training.build_model(68, "pip", 32).__class__
    real_forward = cls.forward

    def spy(self, x, *rest):
        out = real_forward(self, x, *rest)
        seen.append((self.training, x.shape[-1], out[0].shape[-1]))
        return out

    monkeypatch.setattr(cls, "forward", spy)
    runs = str(tmp_path / "runs")
    result = training.main(_args("--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"],
                                 "--input-size", "48", "--epochs", "3", "--runs-dir", runs,
                                 "--progressive-resize", "16:1", "32:1"))
    train_sizes = [(s, g) for t, s, g in seen if t]
    assert sorted(set(train_sizes)) == [(16, 1), (32, 2), (48, 3)]          # each epoch's size, its grid
    assert {(s, g) for t, s, g in seen if not t} == {(48, 3)}                # validation at --input-size
    assert [h["input_px"] for h in result["history"]] == [16, 32, 48]
    log = _read_log(os.path.join(result["run_dir"], "log.csv"))
    assert [r["input_px"] for r in log] == ["16", "32", "48"]
    best = C.load_checkpoint(os.path.join(result["run_dir"], "best.pt"))
    assert best["input_size"] == 48 and best["config"]["progressive_resize"] == ["16:1", "32:1"]
    assert all(np.isfinite(h["train_loss"]) for h in result["history"])


def test_progressive_resize_targets_mean_the_same_point_at_any_size():
    """The loss of a model whose prediction is exactly the target is its floor at full size and
    downsampled alike: the targets (input pixels) are shares of the side, whatever the batch's size."""
    from common.losses import landmark_loss
    model = build_model(2, "pip", 64)
    pts = torch.tensor([[[10.3, 40.7], [50.1, 5.5]]])
    for size in (64, 32, 16):
        g = size // 16
        t = (pts + 0.5) / 64 * g
        cell = t.floor()
        scores = torch.zeros(1, 2, g, g)
        offsets = torch.zeros(1, 4, g, g)
        for k in range(2):
            cx, cy = int(cell[0, k, 0]), int(cell[0, k, 1])
            scores[0, k, cy, cx] = 1.0
            offsets[0, k, cy, cx] = t[0, k, 0] - cx
            offsets[0, 2 + k, cy, cx] = t[0, k, 1] - cy
        assert float(landmark_loss(model, (scores, offsets), pts, "l1")) == pytest.approx(0.0, abs=1e-6)
        model_at = build_model(2, "pip", size)  # the decoding at that size gives the same point, scaled
        back = (model_at.decode((scores, offsets)) + 0.5) * 64 / size - 0.5
        torch.testing.assert_close(back, pts, atol=1e-4, rtol=0)


def test_data_fraction_draws_a_share_of_a_set_anew_each_epoch(tiny_face_set, tmp_path, monkeypatch):
    records = read_datasets([tiny_face_set["train"], tiny_face_set["val"]])
    names = [r.group.split("::", 1)[0] for r in records]
    a, b = sorted(set(names))
    fr = training._data_fractions([a, b], [1.0, 0.5])
    e0, e1 = (training.epoch_indices(records, fr, 0, e) for e in (0, 1))
    assert [names[i] for i in e0].count(a) == names.count(a)                 # all of the first set
    assert [names[i] for i in e0].count(b) == round(0.5 * names.count(b))    # half of the second
    assert e0 != e1 and e0 == training.epoch_indices(records, fr, 0, 0)      # a new draw each epoch, repeatable
    assert training.epoch_indices(records, training._data_fractions([a, b], [1.0]), 0, 0) is None
    for bad in ([0.0], [1.5], [0.5, 0.5, 0.5]):
        with pytest.raises(InputError, match="--data-fraction"):
            training._data_fractions([a, b], bad)
    # a run sees that many faces an epoch; resume keeps its draws
    sizes = []
    real = training.train_one_epoch

    def spy(model, loader, *rest, **kw):
        sizes.append(len(loader.dataset))
        return real(model, loader, *rest, **kw)

    monkeypatch.setattr(training, "train_one_epoch", spy)
    n = len(read_datasets([tiny_face_set["train"]]))
    result = training.main(_args("--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"],
                                 "--input-size", "32", "--epochs", "2", "--data-fraction", "0.5",
                                 "--runs-dir", str(tmp_path / "runs")))
    assert sizes == [round(0.5 * n)] * 2 and len(result["history"]) == 2


def test_two_training_calls_in_one_process_and_second_are_two_sessions(tiny_face_set, tmp_path, monkeypatch):
    monkeypatch.setattr(training.time, "strftime", lambda *a: "2026-01-01T00:00:00Z")   # the same second
    common_args = ["--data", tiny_face_set["train"], "--val-data", tiny_face_set["val"], "--input-size", "32"]
    first = training.main(_args(*common_args, "--epochs", "1", "--runs-dir", str(tmp_path / "runs")))
    training.main(_args("--resume", first["run_dir"], "--epochs", "2"))
    times = open(os.path.join(first["run_dir"], "time.txt")).read().splitlines()
    assert "over 2 session(s)" in times[0] and len(times) == 3, times
