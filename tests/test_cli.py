"""The `codemix` dispatcher: every command group is listed and imports, a group that fails to import
is an error (not a command quietly missing), and errors are one line with exit status 2."""

import subprocess
import sys

import pytest

from codemix import cli
from codemix.cli import COMMAND_MODULES, main


def test_help_lists_every_command_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: codemix") and all(f"    {name}" in out for name in COMMAND_MODULES)


def test_every_group_and_its_actions_import(capsys):
    """`codemix data --help` builds the data group with the synth package's `synth` action."""
    with pytest.raises(SystemExit) as exit_:
        main(["data", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(f"    {action}" in out for action in ("build", "add", "inspect", "synth"))
    for name in COMMAND_MODULES:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0, name
        assert capsys.readouterr().out.startswith(f"usage: codemix {name}"), name


def test_a_group_that_fails_to_import_is_an_error(monkeypatch):
    monkeypatch.setitem(COMMAND_MODULES, "ghost", "codemix.no_such_cli")
    with pytest.raises(ModuleNotFoundError, match="codemix.no_such_cli"):
        main(["ghost", "--help"])
    monkeypatch.setitem(sys.modules, "codemix_broken_cli", None)  # its import raises ImportError
    monkeypatch.setitem(COMMAND_MODULES, "ghost", "codemix_broken_cli")
    with pytest.raises(ImportError, match="codemix_broken_cli"):
        main(["ghost"])
    monkeypatch.setitem(cli.GROUP_ACTIONS, "data", ("codemix.no_such_actions",))
    with pytest.raises(ModuleNotFoundError, match="codemix.no_such_actions"):
        main(["data", "--help"])


def test_bad_input_is_a_one_line_error_with_status_2(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("codemix: error: ") and str(tmp_path / "nowhere") in err and err.count("\n") == 1


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_:
        main(["nonsense"])
    assert exit_.value.code == 2


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "codemix.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert all(f"    {name}" in out.stdout for name in COMMAND_MODULES)
