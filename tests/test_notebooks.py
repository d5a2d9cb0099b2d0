"""The notebooks run headless, top to bottom, on the smoke reproduction's outputs; an error in any cell
fails the test. They are committed without outputs."""

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from reproduce_fixtures import REPO, Reproduction

NOTEBOOKS = REPO / "notebooks"
KERNEL = "codemix-tests"


@pytest.fixture(scope="module")
def venv_kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec that starts this interpreter (the venv's python), whatever `python` is on PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "codemix tests", "language": "python"}))
    return root


def execute(name: str, jupyter_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> nbformat.NotebookNode:
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(REPO)}}).execute()
    return notebook


def _text(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(output.get("text", "") + json.dumps(output.get("data", {}))
                     for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)


@pytest.mark.parametrize("name", ["compare_arms.ipynb", "checkpoint_analysis.ipynb"])
def test_committed_without_outputs_and_with_a_parameters_cell(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert "parameters" in code[0].metadata.get("tags", [])


def test_compare_arms_runs_on_the_smoke_report(smoke_reproduction: Reproduction, venv_kernel, monkeypatch):
    notebook = execute("compare_arms.ipynb", venv_kernel, monkeypatch,
                       CODEMIX_REPORT_DIR=str(smoke_reproduction.report))
    text = _text(notebook)
    assert "tiny-smoke-balanced-to-text-cooldown-text" in text
    assert "image/png" in text  # the figures were drawn
    assert "codemix reproduce recipes/tiny --smoke" in text


def test_checkpoint_analysis_runs_on_the_smoke_runs(smoke_reproduction: Reproduction, venv_kernel, monkeypatch):
    # Only CODEMIX_HOME: the notebook's default finds the last stage of every arm under its runs/.
    monkeypatch.delenv("CODEMIX_RUNS_DIR", raising=False)
    monkeypatch.delenv("CODEMIX_STAGES", raising=False)
    notebook = execute("checkpoint_analysis.ipynb", venv_kernel, monkeypatch, CODEMIX_HOME=str(smoke_reproduction.home))
    text = _text(notebook)
    for arm in ("tiny-smoke-text-only / cooldown", "tiny-smoke-balanced-to-text / cooldown",
                "tiny-smoke-balanced-to-text-cooldown-text / cooldown"):
        assert arm in text
    assert "--- code" in text and "text: text_kjv" in text and "image/png" in text
    assert "training dynamics: " in text  # the scored snapshots, whether or not the study scored any
