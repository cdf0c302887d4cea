"""Networks, losses, and checkpoints: save then load gives the same outputs."""
import os

import numpy as np
import pytest
import torch

from common import checkpoint as C
from common.device import describe_device, select_device
from common.errors import DeviceError
from common.metrics import auc, nme_per_face, summarize, summary_line
from common.landmarks import EYE_INDICES, FACE_INDICES
from common.losses import coord_loss, landmark_loss
from common.model import build_model


def _model(head="pip", size=32, k=68, seed=0):
    torch.manual_seed(seed)
    m = build_model(k, head, size)
    # Non-trivial BatchNorm statistics, so that they must be saved too.
    m.train()
    with torch.no_grad():
        for _ in range(2):
            m(torch.randn(4, 1, size, size))
    return m.eval()


def _outputs(model, x):
    with torch.inference_mode():
        return model.predict(x)


# --- model and losses ------------------------------------------------------------------------

@pytest.mark.parametrize("head", ["pip", "regression"])
@pytest.mark.parametrize("k", [68, 12])
def test_model_shapes(head, k):
    m = _model(head, 32, k)
    x = torch.randn(2, 1, 32, 32)
    out = m(x)
    if head == "pip":
        assert out[0].shape == (2, k, 2, 2) and out[1].shape == (2, 2 * k, 2, 2)
    else:
        assert out.shape == (2, 2 * k)
    assert m.predict(x).shape == (2, k, 2)


@pytest.mark.parametrize("head", ["regression", "pip"])
def test_backbone_is_torchvision_resnet18(head):
    """Our written-out ResNet-18 is torchvision's, parameter for parameter:
    the same names and shapes, and the same features from the same weights."""
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.resnet18(weights=None)
    ref.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if head == "pip":
        ref.layer4[0].conv1.stride = (1, 1)
        ref.layer4[0].downsample[0].stride = (1, 1)
    ref_features = torch.nn.Sequential(ref.conv1, ref.bn1, ref.relu, ref.maxpool,
                                       ref.layer1, ref.layer2, ref.layer3, ref.layer4).eval()
    ours = build_model(68, head).features.eval()
    ref_state = ref_features.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref_state.items()}
    with torch.no_grad():  # random BN statistics, so that they matter too
        for k, v in ref_state.items():
            if v.is_floating_point():
                v.copy_(torch.rand_like(v) + 0.5 if "running_var" in k else torch.randn_like(v) * 0.1)
    ours.load_state_dict(ref_state)
    x = torch.randn(2, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours(x), ref_features(x)
    assert a.shape == b.shape == (2, 512, 8 if head == "pip" else 4, 8 if head == "pip" else 4)
    assert torch.allclose(a, b, atol=1e-5)


def test_inference_does_not_import_torchvision():
    """Start-up: loading the predictor must not pull in torchvision (over a second)."""
    import subprocess
    import sys
    code = ("import sys; import common.predictor, common.predict_cli; "
            "print('torchvision' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_model_rejects_bad_settings():
    with pytest.raises(ValueError, match="multiple of 16"):
        build_model(68, "pip", 40)
    with pytest.raises(ValueError, match="unknown head"):
        build_model(68, "heatmap", 64)


@pytest.mark.parametrize("size", [32, 64])
def test_pip_targets_decode_to_the_points(size):
    """Outputs equal to the loss's targets decode to the points, at zero offset loss."""
    m = _model("pip", size, 12)
    g = size // 16
    pts = torch.tensor(np.random.default_rng(0).uniform(-0.4, size - 0.6, (3, 12, 2)), dtype=torch.float32)
    t = (pts + 0.5) / size * g
    cell = t.floor().clamp(0, g - 1)
    flat = (cell[..., 1] * g + cell[..., 0]).long()
    scores = torch.zeros(3, 12, g * g).scatter_(2, flat.unsqueeze(2), 1.0).view(3, 12, g, g)
    offsets = torch.zeros(3, 2, 12, g * g)
    off = t - cell
    offsets[:, 0].scatter_(2, flat.unsqueeze(2), off[..., 0:1])
    offsets[:, 1].scatter_(2, flat.unsqueeze(2), off[..., 1:2])
    out = (scores, offsets.view(3, 24, g, g))
    torch.testing.assert_close(m.decode(out), pts, atol=1e-4, rtol=0)
    assert float(landmark_loss(m, out, pts, "l1")) == pytest.approx(0.0, abs=1e-6)


def test_pip_neighbour_offsets_train_every_guess_the_decoding_averages():
    """With offset radius 1 the loss also wants each neighbour cell's offset to
    point at the landmark (so that all the guesses the decoding averages are
    right); radius 0 ignores the neighbours, as PIPNet does."""
    m = _model("pip", 64, 2)
    g = 4
    pts = torch.tensor([[[20.3, 37.9], [2.0, 61.0]]])     # inside; in a corner cell (neighbours off-grid)
    t = (pts + 0.5) / 64 * g
    cell = t.floor()
    col, row = torch.arange(g * g) % g, torch.arange(g * g) // g
    own = (row * g + col).view(1, 1, -1) == (cell[..., 1] * g + cell[..., 0]).unsqueeze(2)      # (1, K, G*G)
    right = torch.stack([t[..., 0:1] - col, t[..., 1:2] - row], dim=1).float()   # (1, 2, K, G*G): every cell exact
    only_own = torch.where(own.unsqueeze(1), right, torch.zeros_like(right))
    one_hot = own.float().view(1, 2, g, g)                  # score loss 0: only offsets count below
    for offsets, radius, zero in ((right, 0, True), (right, 1, True), (only_own, 0, True), (only_own, 1, False)):
        loss = float(landmark_loss(m, (one_hot, offsets.reshape(1, 4, g, g)), pts, "l1", radius))
        assert (loss == pytest.approx(0.0, abs=1e-6)) if zero else loss > 0.05, (radius, loss)
    scores = torch.where(own, 1.0, 0.8).view(1, 2, g, g)   # neighbours score high: their guesses count
    torch.testing.assert_close(m.decode((scores, right.reshape(1, 4, g, g))), pts, atol=1e-4, rtol=0)
    assert (m.decode((scores, only_own.reshape(1, 4, g, g))) - pts).abs().max() > 1.0


def test_pip_decode_averages_the_best_cell_and_its_neighbours():
    """Each cell guesses a point (cell + offset); the decode averages the
    guesses of the best cell and its 8 neighbours, weighted by their
    (non-negative) scores, so that a near tie between two cells moves the
    point smoothly instead of making it jump; farther cells do not count."""
    m = _model("pip", 64, 1)
    g, cell = 4, 16.0
    scores = torch.full((1, 1, g * g), -0.2)
    offsets = torch.full((1, 2, 1, g * g), 0.5)
    scores[0, 0, 5] = 1.0        # row 1, col 1: guess (1.5, 1.5) cells
    scores[0, 0, 6] = 0.6        # row 1, col 2, a neighbour: guess (2.25, 1.5) cells
    offsets[0, 0, 0, 6] = 0.25
    scores[0, 0, 15] = 0.9       # row 3, col 3: not a neighbour, ignored
    offsets[0, :, 0, 15] = 0.9
    out = (scores.view(1, 1, g, g), offsets.view(1, 2, g, g))
    x = (1.0 * 1.5 + 0.6 * 2.25) / 1.6 * cell - 0.5
    torch.testing.assert_close(m.decode(out), torch.tensor([[[x, 1.5 * cell - 0.5]]]), atol=1e-4, rtol=0)


def test_regression_targets_decode_to_the_points():
    m = _model("regression", 32, 68)
    pts = torch.rand(2, 68, 2) * 32 - 0.5
    out = ((pts + 0.5) / 32).reshape(2, -1)
    torch.testing.assert_close(m.decode(out), pts, atol=1e-5, rtol=0)
    for name in ("mse", "l1", "smoothl1", "wing"):
        assert float(landmark_loss(m, out, pts, name)) == pytest.approx(0.0, abs=1e-6)
        assert float(landmark_loss(m, out + 0.1, pts, name)) > 0
    with pytest.raises(ValueError, match="unknown loss"):
        coord_loss("huber", out, out)


# --- checkpoints -----------------------------------------------------------------------------

def _state(model, task="face", indices=FACE_INDICES, training=False):
    ck = {**C.describe(model, task, indices, 0.5, 0.25), "config": {"lr": 0.001, "data": ["a.xml"]},
          "scores": {"val_nme": 4.2}, "epoch": 3, "model": model.state_dict()}
    if training:
        opt = torch.optim.Adam(model.parameters())
        ck.update(optimizer=opt.state_dict(), history=[{"epoch": 1, "val_nme": 4.2}])
    return ck


@pytest.mark.parametrize("head", ["pip", "regression"])
def test_save_then_load_gives_identical_outputs(tmp_path, head):
    m = _model(head, 32)
    x = torch.randn(3, 1, 32, 32)
    path = str(tmp_path / "sub" / "best.pt")
    C.atomic_save(_state(m), path)
    assert os.listdir(tmp_path / "sub") == ["best.pt"]        # no temporary file left behind
    m2, ck = C.load_model(path, task="face")
    assert not m2.training
    assert torch.equal(_outputs(m, x), _outputs(m2, x))
    assert ck["task"] == "face" and ck["head"] == head and ck["input_size"] == 32
    assert ck["landmark_indices"] == list(range(68))
    assert ck["normalisation"] == {"mean": 0.5, "std": 0.25, "colour": "gray"}
    # Plain values only: the file loads with weights_only=True.
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == C.FORMAT and raw["scores"]["val_nme"] == 4.2


def test_release_copy_half_precision_loads_as_float32(tmp_path):
    m = _model("pip", 32, 12)
    x = torch.randn(2, 1, 32, 32)
    full = _state(m, "eyes", EYE_INDICES, training=True)
    rel = C.release_copy(full)
    assert "optimizer" not in rel and "history" not in rel
    assert all(v.dtype == torch.float16 for v in rel["model"].values() if v.is_floating_point())
    path = str(tmp_path / "eyes.pt")
    C.atomic_save(rel, path)
    C.atomic_save(full, str(tmp_path / "full.pt"))
    assert os.path.getsize(path) < 0.6 * os.path.getsize(tmp_path / "full.pt")
    m2, ck = C.load_model(path, task="eyes")
    assert all(p.dtype == torch.float32 for p in m2.state_dict().values() if p.is_floating_point())
    torch.testing.assert_close(_outputs(m2, x), _outputs(m, x), atol=0.05, rtol=0.01)
    assert torch.load(path, weights_only=True)["task"] == "eyes"


def test_prefixed_keys_are_cleaned(tmp_path):
    m = _model("regression", 32)
    st = _state(m)
    st["model"] = {"module._orig_mod." + k: v for k, v in m.state_dict().items()}
    C.atomic_save(st, str(tmp_path / "p.pt"))
    m2, _ = C.load_model(str(tmp_path / "p.pt"))
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(_outputs(m, x), _outputs(m2, x))


def test_checkpoint_errors(tmp_path):
    m = _model("pip", 32)
    good = str(tmp_path / "good.pt")
    C.atomic_save(_state(m), good)
    with pytest.raises(C.CheckpointError, match="not found"):
        C.load_model(str(tmp_path / "missing.pt"))
    # Torn file (a kill during a non-atomic write) and a non-checkpoint file.
    torn = tmp_path / "torn.pt"
    torn.write_bytes(open(good, "rb").read()[:5000])
    with pytest.raises(C.CheckpointError, match="torn.pt: damaged or incomplete checkpoint"):
        C.load_model(str(torn))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint\n" * 10)
    with pytest.raises(C.CheckpointError, match="junk.pt"):
        C.load_model(str(junk))
    foreign = str(tmp_path / "foreign.pt")
    torch.save(m.state_dict(), foreign)                       # a bare state_dict
    with pytest.raises(C.CheckpointError, match="not a face landmark checkpoint"):
        C.load_model(foreign)
    with pytest.raises(C.CheckpointError, match="for the 'face' task, but the 'eyes' task is needed"):
        C.load_model(good, task="eyes")
    newer = str(tmp_path / "newer.pt")
    C.atomic_save({**_state(m), "version": C.VERSION + 1}, newer)
    with pytest.raises(C.CheckpointError, match="newer"):
        C.load_model(newer)
    lying = str(tmp_path / "lying.pt")
    C.atomic_save({**_state(m), "landmark_indices": list(EYE_INDICES)}, lying)
    with pytest.raises(C.CheckpointError, match="lying.pt: checkpoint does not match"):
        C.load_model(lying)


def test_atomic_save_keeps_the_old_file_on_failure(tmp_path):
    path = str(tmp_path / "last.pt")
    C.atomic_save({"a": torch.ones(2)}, path)
    with pytest.raises(Exception):
        C.atomic_save({"a": lambda: 0}, path)                 # cannot be pickled
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["last.pt"]


# --- device ----------------------------------------------------------------------------------

def test_select_device_cpu():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("CPU").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        select_device("tpu")


def test_describe_device_counts_threads_in_words():
    """The training log's device line: "1 thread", "2 threads"."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert describe_device(torch.device("cpu")) == "CPU (1 thread)"
        torch.set_num_threads(2)
        assert describe_device(torch.device("cpu")) == "CPU (2 threads)"
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present; the no-GPU error cannot be tested")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "rocm"])
def test_select_device_gpu_absent_is_an_error(name):
    with pytest.raises(DeviceError, match="no GPU is visible"):
        select_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU visible to PyTorch")
def test_select_device_gpu_present():
    assert select_device("cuda").type == "cuda"


# --- evaluation metrics ----------------------------------------------------------------------

def test_nme_per_face_known_case():
    gt = np.zeros((2, 68, 2))
    gt[:, :, 0] = np.arange(68)
    gt[:, 36] = [10, 20]
    gt[:, 45] = [50, 20]                                     # eye corners 40 px apart
    pred = gt.copy()
    pred[0] += [3, 4]                                        # every point 5 px off
    pred[1, :34] += [0, 8]                                   # half the points 8 px off
    nme = nme_per_face(pred, gt, (36, 45))
    np.testing.assert_allclose(nme, [5 / 40, 4 / 40])
    # The eye model: 12 points, corners at positions 0 and 9.
    np.testing.assert_allclose(nme_per_face(pred[:, 36:48], gt[:, 36:48], (0, 9)), [5 / 40, 0.0])


def test_summarize_known_cases():
    s = summarize(np.zeros(10))
    assert s["auc8"] == pytest.approx(100.0) and s["fr8"] == 0 and s["fr10"] == 0 and s["nme"] == 0
    s = summarize(np.full(4, 0.5))
    assert s["auc8"] == 0 and s["fr8"] == 100 and s["fr10"] == 100
    s = summarize(np.array([0.0, 0.0, 0.09, 0.2]))
    assert s["fr8"] == 50 and s["fr10"] == 25 and s["n"] == 4
    assert s["auc8"] == pytest.approx(50.0, abs=0.1)
    assert s["nme"] == pytest.approx(7.25) and s["median"] == pytest.approx(4.5)
    # All faces at 4%: the CED is 0 up to 4% and 1 after, so AUC8 is one half.
    assert auc(np.full(5, 0.04)) == pytest.approx(0.5, abs=2e-3)
    assert np.isnan(summarize(np.array([]))["nme"])
    assert summary_line(summarize(np.zeros(3)), model="x").startswith("NME=0.00 median=0.00 FR8=0.0")


# --- weight averaging (release_weights.py with several checkpoints) ---------------------------

def _run(seed, init="runs/mixed/face/1/best.pt", head="pip"):
    ck = _state(_model(head, 32, seed=seed))
    ck["config"] = {**ck["config"], "init": init}
    return ck


def test_average_of_runs_from_one_start_is_the_mean_of_their_weights(tmp_path):
    a, b = _run(1), _run(2)
    avg = C.average_checkpoints([a, b], ["a.pt", "b.pt"])
    for k, v in avg["model"].items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (a["model"][k] + b["model"][k]) / 2)
        else:
            assert torch.equal(v, a["model"][k])  # BatchNorm's batch counters
    assert [s["file"] for s in avg["averaged_from"]] == ["a.pt", "b.pt"]
    assert avg["averaged_from"][0]["scores"] == {"val_nme": 4.2}
    assert "scores" not in avg and "epoch" not in avg  # the average was never validated as such
    path = str(tmp_path / "soup.pt")
    C.atomic_save(C.release_copy(avg), path)
    model, ck = C.load_model(path, task="face")
    assert ck["averaged_from"][1]["file"] == "b.pt" and model.head == "pip"


def test_average_refuses_runs_that_cannot_be_averaged():
    with pytest.raises(C.CheckpointError, match="at least two"):
        C.average_checkpoints([_run(1)], ["a.pt"])
    with pytest.raises(C.CheckpointError, match="same --init"):
        C.average_checkpoints([_run(1), _run(2, init="other.pt")], ["a.pt", "b.pt"])
    with pytest.raises(C.CheckpointError, match="same --init"):
        C.average_checkpoints([_run(1, init=None), _run(2, init=None)], ["a.pt", "b.pt"])
    with pytest.raises(C.CheckpointError, match="b.pt: its head differs"):
        C.average_checkpoints([_run(1), _run(2, head="regression")], ["a.pt", "b.pt"])


def test_release_weights_cli_averages_and_guards_its_inputs(tmp_path):
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(__file__), "..", "training", "tools", "release_weights.py")
    a, b = str(tmp_path / "a.pt"), str(tmp_path / "b.pt")
    C.atomic_save(_run(1), a)
    C.atomic_save(_run(2), b)
    out = str(tmp_path / "soup.pt")
    proc = subprocess.run([sys.executable, script, a, b, out], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "average of" in proc.stdout and C.load_checkpoint(out)["averaged_from"][0]["file"] == a
    proc = subprocess.run([sys.executable, script, a, b, b, "--force"], capture_output=True, text=True)
    assert proc.returncode == 2 and "would overwrite the input" in proc.stderr
    C.atomic_save(_run(3, init="elsewhere.pt"), b)
    proc = subprocess.run([sys.executable, script, a, b, str(tmp_path / "x.pt")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "same --init" in proc.stderr
