"""Where codemix writes: everything (corpora, shards, runs, reports) lives under one root."""

import os
import re
from pathlib import Path

HOME_ENV = "CODEMIX_HOME"
# A scheme (s3://, gs://, file://, dbfs:/ ...): a URL, not a local path; one letter would be a drive.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")
DEFAULT_HOME = ".codemix"


def codemix_home(override: str | os.PathLike | None = None) -> Path:
    """The root for everything codemix writes: a flag's value, else $CODEMIX_HOME, else ./.codemix."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get(HOME_ENV) or Path.cwd() / DEFAULT_HOME)


def corpora_dir(home: str | os.PathLike | None = None) -> Path:
    return codemix_home(home) / "corpora"


def runs_dir(home: str | os.PathLike | None = None) -> Path:
    return codemix_home(home) / "runs"


def reports_dir(home: str | os.PathLike | None = None) -> Path:
    return codemix_home(home) / "reports"


def natural_key(path: Path) -> list:
    """Sort key that puts sweep_code_25 before sweep_code_100: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def is_url(location: str | os.PathLike) -> bool:
    """Whether `location` is a URL (object storage, ...) rather than a path on this machine."""
    return _URL.match(str(location)) is not None
