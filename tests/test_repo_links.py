"""A clone is self-contained: no tracked file links to a path outside the repository (a relative
link climbing out of it) or names a directory of the machine it was written on."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Directories of the machines codemix was developed on, and the folder beside the clone that held its
# notes; split so this file does not match itself.
MACHINE_PATHS = re.compile("|".join(["/wo" + "rk/", r"\.\./sha" + "red", r"(?<![\w.-])/ho" + r"me/\w", r"(?<![\w.-])/Us" + r"ers/\w"]))
MARKDOWN_LINK = re.compile(r"\]\(([^)\s#]+)[^)]*\)")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = []
    for name in filter(None, names.split("\0")):
        path = ROOT / name
        if path.is_file() and b"\0" not in path.read_bytes()[:4096]:  # text only
            files.append(path)
    return files


def test_no_tracked_file_names_a_machine_path():
    hits = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
            for path in tracked_text_files()
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
            if MACHINE_PATHS.search(line)]
    assert not hits, "\n".join(hits)


def test_relative_links_stay_inside_the_repository():
    outside = []
    for path in tracked_text_files():
        if path.suffix not in {".md", ".ipynb"}:
            continue
        for target in MARKDOWN_LINK.findall(path.read_text(errors="replace")):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                outside.append(f"{path.relative_to(ROOT)}: {target}")
    assert not outside, "\n".join(outside)
