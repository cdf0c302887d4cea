"""Every script (inference/, training/tools/, and train.py through
common/training.py): its model and device options take their defaults from
common/model_options.py (the default-model rule or a named file of this
repository's weights/, never a path relative to the current folder;
--device auto), and its errors reach the user through common/cli.py's
run_script: one line ``error: ...`` on stderr and exit code 2, no
traceback. inference/ holds the commands users run, nothing else."""
from __future__ import annotations

import glob
import importlib.util
import os
import re
import sys

import pytest

from conftest import REPO_ROOT

USER_COMMANDS = ("predict.py", "evaluate.py", "benchmark.py", "export_onnx.py")
SCRIPTS = sorted(glob.glob(os.path.join(REPO_ROOT, "inference", "*.py"))
                 + glob.glob(os.path.join(REPO_ROOT, "training", "tools", "*.py")))
WEIGHT_OPTIONS = ("--weights", "--eye-weights", "--face-weights", "--split-from", "--init", "--teacher")


def _rel(path: str) -> str:
    return os.path.relpath(path, REPO_ROOT)


def _parser(path: str):
    """The script's ``get_args_parser()``; predict.py's lives in common/predict_cli.py,
    train.py's in common/training.py."""
    if path.endswith(os.path.join("inference", "predict.py")):
        from common.predict_cli import get_args_parser
        return get_args_parser()
    if path.endswith(os.path.join("common", "training.py")):
        from common.training import get_args_parser
        return get_args_parser()
    spec = importlib.util.spec_from_file_location(f"script_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_args_parser()


def test_inference_holds_the_user_commands_only():
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO_ROOT, "inference", "*.py"))) \
        == sorted(USER_COMMANDS)


@pytest.mark.parametrize("path", SCRIPTS + [os.path.join(REPO_ROOT, "common", "training.py")], ids=_rel)
def test_defaults_of_weights_and_device_come_from_one_place(path):
    """(The thin train.py scripts share common/training.py's parser and set
    their platform's device with ``parser.set_defaults``.)"""
    from common.model_options import DEFAULT_DEVICE, DEVICE_HELP, WEIGHTS_DIR
    for action in _parser(path)._actions:
        if "--device" in action.option_strings:
            assert action.default == DEFAULT_DEVICE and action.help == DEVICE_HELP, _rel(path)
        if set(action.option_strings) & set(WEIGHT_OPTIONS):
            for default in action.default if isinstance(action.default, list) else [action.default]:
                # None: the default-model rule (or none at all); else a shipped file, wherever the command runs
                assert default is None or (os.path.isabs(default) and os.path.dirname(default) == WEIGHTS_DIR
                                           and os.path.isfile(default)), (_rel(path), action.option_strings, default)


@pytest.mark.parametrize("path", SCRIPTS, ids=_rel)
def test_no_script_prints_its_errors_by_hand(path):
    source = open(path, encoding="utf-8").read()
    assert not re.search(r"""print\(f?["']error""", source), f"{_rel(path)}: raise a UserError instead"
    assert not re.search(r"\breturn 2\b", source), f"{_rel(path)}: exit 2 is run_script's"
    assert re.search(r"run_script\(main, ", source), f"{_rel(path)}: main runs through run_script"


def _missing(tmp) -> dict[str, list[str]]:
    """A command line per script that names a file that does not exist."""
    m = os.path.join(tmp, "missing")
    out = os.path.join(tmp, "out")
    return {
        "inference/predict.py": [f"{m}.jpg", "--weights", f"{m}.pt", "--device", "cpu"],
        "inference/evaluate.py": ["--weights", f"{m}.pt", "--data", f"{m}.xml", "--device", "cpu"],
        "inference/benchmark.py": ["--weights", f"{m}.pt", "--no-eyes", "--no-dlib", "--no-startup",
                                   "--no-mediapipe", "--device", "cpu"],
        "inference/export_onnx.py": ["--weights", f"{m}.pt"],
        "training/tools/calibrate_detector.py": ["--data", f"{m}.xml"],
        "training/tools/compare_evals.py": [f"{m}_a.csv", f"{m}_b.csv"],
        "training/tools/estimate_face_shape.py": [f"{out}.csv", "--data", f"{m}.xml", "--split-from", "none"],
        "training/tools/evaluate_pose.py": ["--weights", f"{m}.pt", "--data", f"{m}.xml", "--plot", f"{out}.png",
                                            "--device", "cpu"],
        "training/tools/evaluate_video.py": ["--weights", f"{m}.pt", "--data", f"{m}.xml", "--plot", f"{out}.png",
                                             "--device", "cpu"],
        "training/tools/eye_crop_stats.py": ["--data", f"{m}.xml"],
        "training/tools/import_blazeface.py": [f"{m}.whl", "--output", f"{out}.pt"],
        "training/tools/import_mtcnn.py": [f"{m}.whl", "--output", f"{out}.pt"],
        "training/tools/mirror_offset.py": ["--weights", f"{m}.pt", "--data", f"{m}.xml", "--device", "cpu"],
        "training/tools/pseudo_label.py": ["--weights", f"{m}.pt", "--data", f"{m}.csv", "--out", f"{out}.csv",
                                           "--device", "cpu"],
        "training/tools/release_weights.py": [f"{m}.pt", f"{out}.pt"],
        "training/tools/tune_detector.py": ["--data", f"{m}.xml"],
    }


def test_every_script_says_a_missing_file_in_one_line(tmp_path, monkeypatch, capsys):
    """In this process (each script's main through run_script, as its
    ``__main__`` runs it): a traceback would fail the test."""
    from common.cli import run_script
    commands = _missing(str(tmp_path))
    assert sorted(commands) == sorted(_rel(p) for p in SCRIPTS), "a new script: add its command line here"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    failed = []
    for rel, args in commands.items():
        path = os.path.join(REPO_ROOT, rel)
        if rel == "inference/predict.py":
            from common.predict_cli import main
        else:
            spec = importlib.util.spec_from_file_location(f"script_{os.path.basename(rel)[:-3]}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            main = module.main
        monkeypatch.setattr(sys, "argv", [path, *args])
        with pytest.raises(SystemExit) as stop:
            run_script(main, _parser(path))
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        if stop.value.code != 2 or len(errors) != 1 or "missing" not in errors[0]:
            failed.append(f"{rel}: exit {stop.value.code}: {err.strip()[-300:]}")
    assert failed == []


@pytest.mark.parametrize("path", SCRIPTS, ids=_rel)
def test_help_shows_example_commands_as_written(path):
    """A docstring's example command continued with a backslash must be a raw string: in a plain one
    Python joins the two lines, and --help shows one long line with a run of spaces inside."""
    import io
    import tokenize
    with open(path, encoding="utf-8") as f:
        first = next(t for t in tokenize.generate_tokens(io.StringIO(f.read()).readline)
                     if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENCODING))
    if first.type == tokenize.STRING and "\\\n" in first.string:
        assert first.string.lower().startswith("r"), f"{_rel(path)}: make its docstring r\"\"\"...\"\"\""
