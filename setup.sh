#!/usr/bin/env bash
# Sets up balpm on a fresh machine: a virtual environment in .venv with the package, its dev extras
# (tests, and mkdocs-material for the docs site's build test) and torch pinned by constraints.txt (the CPU
# 2.13.0 build here; see docs/guide.md), plus Debian's
# chromium for the dashboard's browser test when we are root and it is missing.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
# the BatchBALD reference for the tests, without its torchvision dependency (see pyproject.toml's dev extra)
.venv/bin/python -m pip install --quiet -c constraints.txt --no-deps 'batchbald-redux==2.0.5'
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing Debian's chromium for the browser test"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "setup: done ($(.venv/bin/python -c 'import torch, balpm; print("balpm", balpm.__version__, "torch", torch.__version__)'))"
