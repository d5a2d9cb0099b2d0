import subprocess
import sys

from codemix.cli import main


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert "COMMAND" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "codemix.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
