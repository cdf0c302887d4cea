"""Module structure: no import cycles among common/ modules, and a script's
``--help`` stays light (no torch)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

from conftest import REPO_ROOT

COMMON = REPO_ROOT + "/common"


def import_graph() -> dict[str, set[str]]:
    """common module -> the common modules it imports, at the top or inside
    functions (``from .x import``, ``from . import x``, ``common.x``)."""
    mods = {f[:-3] for f in os.listdir(COMMON) if f.endswith(".py") and f != "__init__.py"}
    graph = {}
    for m in mods:
        deps = set()
        for node in ast.walk(ast.parse(open(os.path.join(COMMON, m + ".py")).read())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:
                    deps.add(node.module.split(".")[0])
                elif node.level == 1:
                    deps.update(a.name for a in node.names)
                elif node.module and node.module.startswith("common."):
                    deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("common."))
        graph[m] = deps & mods
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}   # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return path + [m, d]
            if d not in state:
                found = visit(d, path + [m])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m, [])
            if found:
                return found
    return None


def test_common_modules_import_no_cycle():
    graph = import_graph()
    assert "errors" in graph and graph["errors"] == set(), "common/errors.py imports nothing"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_predict_help_does_not_import_torch():
    code = ("import sys, runpy; sys.argv = ['predict.py', '--help']\n"
            "try:\n    runpy.run_path(%r, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('heavy:', sorted(m for m in ('torch', 'cv2', 'matplotlib') if m in sys.modules))"
            % (REPO_ROOT + "/inference/predict.py"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "heavy: []"


def test_every_script_help_renders():
    # argparse formats help strings with %: an unescaped "%" in one crashes --help.
    import glob
    scripts = sorted(glob.glob(REPO_ROOT + "/inference/*.py") + glob.glob(REPO_ROOT + "/training/*/*/train.py")
                     + glob.glob(REPO_ROOT + "/training/tools/*.py"))
    assert len(scripts) > 10
    failed = []
    for path in scripts:
        r = subprocess.run([sys.executable, path, "--help"], capture_output=True, text=True, timeout=120,
                           cwd=REPO_ROOT)
        if r.returncode != 0 or "usage:" not in r.stdout:
            failed.append(f"{os.path.relpath(path, REPO_ROOT)}: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    assert failed == []
