"""Hostile input to every command: a binary file, malformed YAML/JSON, a file where a folder belongs.
Each ends in exit code 2 and one `codemix: error:` line naming the file, never a traceback."""

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_eval_scoring import shared_checkpoint

from codemix.cli import main

BINARY = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8  # not UTF-8 from its first byte
MALFORMED_YAML = b"name: x\nstages: [1, 2\nmodel: : :\n"
MALFORMED_JSON = b'{"d_model": 64,'


def _yaml_input(command: list[str]) -> Callable[[Path, bytes], tuple[list[str], Path]]:
    """A command whose YAML argument is the bad file."""
    def build(tmp: Path, payload: bytes) -> tuple[list[str], Path]:
        bad = tmp / "input.yaml"
        bad.write_bytes(payload)
        return [part.replace("BAD", str(bad)).replace("TMP", str(tmp)) for part in command], bad
    return build


def _eval_task_file(tmp: Path, payload: bytes) -> tuple[list[str], Path]:
    bad = tmp / "task.yaml"
    bad.write_bytes(payload)
    return ["eval", str(shared_checkpoint()), "--task-file", str(bad), "--limit", "1"], bad


def _broken_checkpoint(name: str) -> Callable[[Path, bytes], tuple[list[str], Path]]:
    """eval and export of a checkpoint folder one of whose files is replaced by the bad bytes."""
    def build(tmp: Path, payload: bytes, command: str) -> tuple[list[str], Path]:
        checkpoint = tmp / "checkpoint"
        shutil.copytree(shared_checkpoint(), checkpoint)
        (checkpoint / name).write_bytes(payload)
        args = ["eval", str(checkpoint), "--tasks", "copa", "--limit", "1"] if command == "eval" else \
            ["export", "hf", str(checkpoint), str(tmp / "hf")]
        return args, checkpoint / name
    return build


def _report_run(tmp: Path, payload: bytes) -> tuple[list[str], Path]:
    stage = tmp / "runs" / "arm" / "pt-0123"
    stage.mkdir(parents=True)
    (stage / "lineage.json").write_bytes(payload)
    return ["report", str(stage), "--out", str(tmp / "report")], stage / "lineage.json"


COMMANDS = {
    "train": _yaml_input(["train", "BAD", "--home", "TMP/home"]),
    "recipe plan": _yaml_input(["recipe", "plan", "BAD"]),
    "data build": _yaml_input(["data", "build", "BAD", "--out", "TMP/corpus", "--home", "TMP/home"]),
    "eval --task-file": _eval_task_file,
    "report": _report_run,
}


@pytest.mark.parametrize("payload", [BINARY, MALFORMED_YAML], ids=["binary", "malformed"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_binary_or_malformed_input_is_one_error_line_naming_the_file(command, payload, tmp_path, capsys):
    args, bad = COMMANDS[command](tmp_path, payload)
    _assert_one_error_naming(main(args), capsys, bad)


@pytest.mark.parametrize("payload", [BINARY, MALFORMED_JSON], ids=["binary", "malformed"])
@pytest.mark.parametrize("name", ["model_config.json", "tokenizer.json"])
@pytest.mark.parametrize("command", ["eval", "export"])
def test_a_checkpoint_with_a_broken_file_is_one_error_line_naming_it(command, name, payload, tmp_path, capsys):
    args, bad = _broken_checkpoint(name)(tmp_path, payload, command)
    _assert_one_error_naming(main(args), capsys, bad)
    assert not (tmp_path / "hf").exists()


def test_report_out_pointing_at_a_file_is_refused_and_the_file_kept(tmp_path, capsys):
    stage = tmp_path / "runs" / "arm" / "pt-0123"
    stage.mkdir(parents=True)
    taken = tmp_path / "report.md"
    taken.write_text("my notes")
    for out in (taken, taken / "inside"):
        _assert_one_error_naming(main(["report", str(stage), "--out", str(out)]), capsys, taken)
    assert taken.read_text() == "my notes"


def test_eval_out_at_a_folder_or_below_a_file_is_refused(tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep")
    for out in (tmp_path, taken / "r.json"):
        args = ["eval", str(shared_checkpoint()), "--tasks", "cb", "--limit", "1", "--heldout-samples", "0"]
        _assert_one_error_naming(main([*args, "--out", str(out)]), capsys, out)
    assert taken.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _assert_one_error_naming(code: int, capsys: pytest.CaptureFixture, path: Path) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("codemix: error: ") and err.count("\n") == 1, err
    assert str(path) in err and "Traceback" not in err, err


@pytest.mark.slow  # a fresh interpreter imports Lightning: about 35 s on a loaded 2-core machine
def test_the_console_script_prints_no_traceback_for_a_binary_recipe(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "recipe.yaml"
    bad.write_bytes(BINARY)
    run = subprocess.run([sys.executable, "-m", "codemix.cli", "train", str(bad), "--home", str(tmp_path / "home")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.splitlines() == [run.stderr.strip()], run.stderr
    assert run.stderr.startswith(f"codemix: error: {bad}: not a UTF-8 text file")
