"""Shared fixtures: the repository root, the shared real-data folder, and
tiny generated datasets (see ``synthetic.py``)."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

# The tests use tiny images: one thread is fastest, and several threads spin
# badly when the machine's cores are busy (a 60x slow-down measured while a
# training run was going). Subprocesses inherit the variable.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)

# MTCNN's ONNX exports are cached (common/mtcnn.py); tests keep theirs in a
# folder of their own, shared with their subprocesses, not in the user's cache.
_CACHE = tempfile.mkdtemp(prefix="face-landmarks-test-cache-")
os.environ["FACE_LANDMARKS_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Real faces live beside the repository and are never copied into it.
SHARED_DATA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data"))


@pytest.fixture(scope="session")
def repo_root() -> str:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> str:
    """Path of ``../shared/data``; skips the test when it is absent."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"real face data not found at {SHARED_DATA} (tests on real faces need ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_face_set(tmp_path_factory) -> dict:
    """24 generated training faces and 8 validation faces, as dlib XML files
    with PNG images beside them. Built once per session (read-only for tests)."""
    import synthetic
    folder = str(tmp_path_factory.mktemp("tiny_faces"))
    return {"train": synthetic.synthetic_xml_dataset(folder, 24, seed=1, name="train.xml"),
            "val": synthetic.synthetic_xml_dataset(folder, 8, seed=2, name="val.xml"),
            "folder": folder}


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory) -> dict:
    """Untrained but well-formed face and eye checkpoints: enough for plumbing."""
    from pathlib import Path
    from inference_helpers import make_random_checkpoint
    d = Path(tmp_path_factory.mktemp("ckpt"))
    return {"face": make_random_checkpoint(d / "face.pt", "face"),
            "eyes": make_random_checkpoint(d / "eyes.pt", "eyes")}


@pytest.fixture()
def photo(tmp_path):
    """The portrait copied to ``tmp_path/pic.jpg``."""
    import shutil
    from inference_helpers import portrait_path
    p = tmp_path / "pic.jpg"
    shutil.copy(portrait_path(), p)
    return p
