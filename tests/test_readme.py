"""README.md's shell and Python blocks, run as written, so they cannot go stale.

The ```bash / ```sh blocks run in order, each in its own ``bash -e -o pipefail``,
in a fresh copy of the repository: the files a clone would have (``git ls-files``
plus new, untracked source files), small ones copied and large ones (the
weights) symlinked, with ``../shared`` linked beside it as in the real layout.
Outputs therefore land in the copy, and a block that relies on an output an
earlier block did not write fails here as it would for a reader.

Left out: lines that create or activate a virtual environment or pip-install
(the test's environment has the packages), blocks that need a camera or a
display (``--camera``, ``--show``), the test-suite block (``pytest``: it would
run this test again), blocks holding the comment ``not run by
tests/test_readme.py`` (long runs), blocks that read ``../shared/data`` when it
is absent, and the export block when onnx or onnxscript is missing. The
```python blocks run from a folder outside the copy, with ``/path/to/repo``
replaced by the copy's path. Links and section references: tests/test_links.py.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_MARK = "not run by tests/test_readme.py"
LARGE = 1 << 20  # files above this are symlinked into the copy, not copied
BLOCK = re.compile(r"^```([A-Za-z]*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
ENV_LINE = re.compile(r"^\s*(python3? -m venv\b|\. \S*activate\b|source \S*activate\b|(python3? -m )?pip3? install\b)")


def readme_blocks(text: str, langs: tuple[str, ...]) -> list[tuple[int, str]]:
    """``(line number, code)`` of the fenced blocks in ``langs``, in order."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(2))
            for m in BLOCK.finditer(text) if m.group(1) in langs]


def logical_lines(code: str) -> list[str]:
    """Shell lines with backslash continuations joined (newlines kept)."""
    out, cur = [], ""
    for line in code.splitlines():
        cur += line + "\n"
        if not line.rstrip().endswith("\\"):
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out


def runnable(code: str, have_shared_data: bool, have_onnx: bool) -> tuple[str | None, str]:
    """The part of a shell block the test runs, or None and why not."""
    if SKIP_MARK in code:
        return None, "marked as not run by this test"
    if re.search(r"--camera\b|--show\b", code):
        return None, "needs a camera or a display"
    if "../shared/data" in code and not have_shared_data:
        return None, "../shared/data is absent"
    if "export_onnx.py" in code and not have_onnx:
        return None, "onnx or onnxscript is not installed"
    kept = [line for line in logical_lines(code) if not ENV_LINE.match(line)]
    if any(re.match(r"\s*(python3? -m )?pytest\b", line) for line in kept):
        return None, "the test suite itself"
    if not "".join(kept).strip():
        return None, "only installs"
    return "".join(kept), ""


def repo_files() -> list[str]:
    """What a clone of the working tree would hold: the tracked files, plus
    untracked, not ignored source files (new code not yet committed), but not
    outputs that running the README in the repository itself left behind."""
    def git(*args: str) -> set[str]:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", *args],
                             capture_output=True, check=True).stdout.decode()
        return {f for f in out.split("\0") if f and (REPO / f).is_file()}
    try:
        new = {f for f in git("--others", "--exclude-standard") if f.endswith((".py", ".md", ".txt", ".sh"))}
        return sorted(git("--cached") | new)
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", "runs", "venv", ".venv", "__pycache__", ".pytest_cache", "out"}
        return sorted(str(p.relative_to(REPO)) for p in REPO.rglob("*")
                      if p.is_file() and not skip & set(p.relative_to(REPO).parts))


def make_copy(root: Path) -> Path:
    """A fresh copy of the repository at ``root/repo``, ``root/shared`` linked
    to the real ``../shared`` and ``root/bin/python`` running this interpreter."""
    copy = root / "repo"
    for rel in repo_files():
        src, dst = REPO / rel, copy / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.stat().st_size > LARGE:
            dst.symlink_to(src)
        else:
            shutil.copy2(src, dst)
    if (REPO.parent / "shared").is_dir():
        (root / "shared").symlink_to(REPO.parent / "shared")
    (root / "bin").mkdir()
    wrapper = root / "bin" / "python"  # a script, not a link: a venv's python must keep its path
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return copy


def env_for(root: Path) -> dict:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return env


def _have(*modules: str) -> bool:
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _report(what: str, line: int, code: str, proc: subprocess.CompletedProcess) -> str:
    return (f"README.md line {line}: {what} exited {proc.returncode}\n--- block\n{code}"
            f"--- stdout (end)\n{proc.stdout[-3000:]}\n--- stderr (end)\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="module")
def copy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    make_copy(root)
    return root


def test_readme_shell_blocks_run_in_order(copy_root):
    text = (REPO / "README.md").read_text()
    blocks = readme_blocks(text, ("bash", "sh"))
    assert blocks, "README.md has no shell blocks"
    have_data = (copy_root / "shared" / "data").is_dir()
    have_onnx = _have("onnx", "onnxscript")
    ran, skipped = 0, []
    for line, code in blocks:
        script, why = runnable(code, have_data, have_onnx)
        if script is None:
            skipped.append(f"line {line}: {why}")
            continue
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=copy_root / "repo",
                              env=env_for(copy_root), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, _report("shell block", line, script, proc)
        ran += 1
    print(f"ran {ran} shell blocks; skipped: {skipped}")
    assert ran >= 3, f"only {ran} shell blocks ran; skipped: {skipped}"


def test_readme_python_blocks_run(copy_root):
    text = (REPO / "README.md").read_text()
    elsewhere = copy_root / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    for line, code in readme_blocks(text, ("python",)):
        code = code.replace("/path/to/repo", str(copy_root / "repo"))
        proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env_for(copy_root),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, _report("python block", line, code, proc)


def test_skip_rules():
    assert runnable("python inference/predict.py --camera 0 --show\n", True, True)[0] is None
    assert runnable("python -m pytest -q\n", True, True)[0] is None
    assert runnable(f"# {SKIP_MARK}: hours\nbash training/recipe.sh\n", True, True)[0] is None
    assert runnable("python inference/evaluate.py --data ../shared/data/x.xml\n", False, True)[0] is None
    kept, _ = runnable("python -m venv .venv && . .venv/bin/activate\npip install -r requirements-cpu.txt \\\n"
                       "    pytest\npython inference/predict.py a.jpg \\\n    --output out\n", True, True)
    assert kept == "python inference/predict.py a.jpg \\\n    --output out\n"
